"""billing.dunning → the invoice: overdue, retries exhausted, and the dunning status shown on it."""

from collections.abc import Callable
from datetime import date

import asyncpg

from shared.envelope import CloudEvent

from ..app.handlers import Invoicing


async def on_dunning_event(app: Invoicing, conn: asyncpg.Connection, event: CloudEvent) -> None:
    d, tenant = event.data, event.tenantid
    invoice_id = d.get("invoiceId") or (d.get("dunning") or {}).get("invoiceId")
    if not invoice_id:
        return
    if event.type == "dunning.due_date_passed":
        await app.on_due_date_passed(conn, tenant, invoice_id, date.fromisoformat(d["dueDate"]))
    elif event.type == "dunning.exhausted":
        await app.on_dunning_exhausted(conn, tenant, invoice_id, d.get("finalAction", "leave_open"))
    if snapshot := d.get("dunning"):
        await conn.execute(
            """INSERT INTO invoice_dunning (invoice_id, tenant_id, status, attempts, next_retry_at, version)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (invoice_id) DO UPDATE SET status = EXCLUDED.status, attempts = EXCLUDED.attempts,
                 next_retry_at = EXCLUDED.next_retry_at, version = EXCLUDED.version
               WHERE invoice_dunning.version < EXCLUDED.version""",
            invoice_id, tenant, snapshot.get("status", "IN_PROGRESS"), snapshot.get("attempts") or 0,
            snapshot.get("nextRetryAt"), int(event.sequence or 0),
        )


def make_dunning_consumer(handlers: Callable[[], Invoicing]):
    """The consumer of billing.dunning; `handlers()` is called per event, over the running pool."""

    async def on_dunning(conn: asyncpg.Connection, event: CloudEvent) -> None:
        await on_dunning_event(handlers(), conn, event)

    return on_dunning
