"""billing.dunning → the invoice: overdue, retries exhausted, and the dunning status shown on it."""

from collections.abc import Callable
from datetime import date

import asyncpg

from shared.envelope import CloudEvent

from ..app import reactions, repository
from ..app.invoices import Invoicing


async def on_dunning_event(app: Invoicing, conn: asyncpg.Connection, event: CloudEvent) -> None:
    d, tenant = event.data, event.tenantid
    invoice_id = d.get("invoiceId") or (d.get("dunning") or {}).get("invoiceId")
    if not invoice_id:
        return
    if event.type == "dunning.due_date_passed":
        await reactions.on_due_date_passed(app, conn, tenant, invoice_id, date.fromisoformat(d["dueDate"]))
    elif event.type == "dunning.exhausted":
        await reactions.on_dunning_exhausted(app, conn, tenant, invoice_id, d.get("finalAction", "leave_open"))
    if snapshot := d.get("dunning"):
        await repository.record_dunning(
            conn,
            invoice_id,
            tenant,
            status=snapshot.get("status", "IN_PROGRESS"),
            attempts=snapshot.get("attempts") or 0,
            next_retry_at=snapshot.get("nextRetryAt"),
            version=int(event.sequence or 0),
        )


def make_dunning_consumer(handlers: Callable[[], Invoicing]):
    """The consumer of billing.dunning; `handlers()` is called per event, over the running pool."""

    async def on_dunning(conn: asyncpg.Connection, event: CloudEvent) -> None:
        await on_dunning_event(handlers(), conn, event)

    return on_dunning
