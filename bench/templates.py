"""Real invoice events, made by the Invoicing handlers in a scratch database, used as templates:
the projection and rebuild benchmarks append copies with fresh ids, so they measure the read
side with the events the service really writes, without paying for the write side each time."""

import copy
import uuid

import asyncpg

from services.invoicing.api.schemas import CreateInvoiceIn
from services.invoicing.app.invoices import Invoicing
from services.invoicing.domain import events as ev
from services.invoicing.service import service as invoicing
from shared.envelope import CloudEvent

AGGREGATES = invoicing.aggregates
STORE = AGGREGATES.store  # the event store the bench writes to and replays directly
TENANT = "ten_bench"
BODY = {
    "customerId": "?",
    "dueDate": "2030-12-31",
    "reference": None,
    "items": [
        {"description": "Pro Plan - Monthly", "quantity": 1, "unitAmount": 180000},
        {"description": "Extra seats", "quantity": 3, "unitAmount": 25000},
    ],
}


async def invoice_lifecycle(pool: asyncpg.Pool) -> list[CloudEvent]:
    """created → sent (finalized + sent) → paid for one invoice: its events in stream order."""
    app = Invoicing(pool, AGGREGATES)
    customer = await app.create_customer(
        TENANT, ev.CustomerFields(name="Bench Buyer", email="buyer@bench.example", currency="USD")
    )
    body = CreateInvoiceIn.model_validate({**BODY, "customerId": customer["id"]})
    invoice = await app.create_invoice(TENANT, customer["id"], body.draft_fields())
    await app.send(TENANT, invoice["id"])
    await app.record_offline_payment(TENANT, invoice["id"], amount=None, method="other", reference=None, paid_on=None)
    async with pool.acquire() as conn:
        return [s.event for s in (await AGGREGATES.load(conn, invoice["id"])).stored]


def restamp(event: CloudEvent, invoice_id: str) -> CloudEvent:
    """A copy of an invoice event for another invoice id (and a fresh event id)."""
    data = copy.deepcopy(event.data)
    if isinstance(data.get("invoice"), dict):
        data["invoice"]["id"] = invoice_id
    return event.model_copy(update={"id": f"evt_{uuid.uuid4().hex}", "subject": invoice_id, "data": data})
