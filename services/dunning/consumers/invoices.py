"""billing.invoices → what dunning knows of each invoice (status, due date, amount due), and the
overdue and reminder timers that follow from it.

The event's `sequence` (its version in the invoice's stream) orders snapshots: an older or
repeated one is ignored, so redelivery and reordering cannot move an invoice backwards.
"""

from datetime import date
from typing import Any

import asyncpg

from shared.envelope import CloudEvent
from shared.logs import get_logger

from ..app.handlers import DunningHandlers
from ..domain.schedule import InvoiceFacts

log = get_logger(__name__)


def invoice_facts(event: CloudEvent) -> InvoiceFacts | None:
    """The facts from the event's `invoice` snapshot (docs/events.md); None if it has none.

    Also reads the flat shape the first invoicing skeleton published (`invoiceId`, `status`,
    `dueDate`, `amountDue` at the top of `data`).
    """
    data = event.data
    nested = data.get("invoice")
    snap: dict[str, Any] = nested if isinstance(nested, dict) else data
    invoice_id = snap.get("id") if "invoice" in data else snap.get("invoiceId")
    if not invoice_id or "status" not in snap:
        return None
    status = "DELETED" if event.type == "invoice.deleted" else str(snap["status"]).upper()
    due = snap.get("dueDate")
    return InvoiceFacts(
        invoice_id=invoice_id,
        tenant_id=event.tenantid,
        status=status,
        due_date=date.fromisoformat(due) if due else None,
        amount_due=int(snap.get("amountDue") or 0),
    )


def make_invoice_consumer(handlers: DunningHandlers):
    async def on_invoice_event(conn: asyncpg.Connection, event: CloudEvent) -> None:
        facts = invoice_facts(event)
        if facts is None:
            return  # credit notes and other events without an invoice snapshot
        await handlers.on_invoice(conn, facts, version=int(event.sequence or 1), at=event.time)

    return on_invoice_event
