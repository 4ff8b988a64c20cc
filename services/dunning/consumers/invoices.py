"""billing.invoices → invoice_schedule: the due dates and balances dunning's timers work from."""

import asyncpg

from shared.envelope import CloudEvent


async def on_invoice_event(conn: asyncpg.Connection, event: CloudEvent) -> None:
    if event.type != "invoice.created":
        return
    d = event.data
    await conn.execute(
        """INSERT INTO invoice_schedule (invoice_id, tenant_id, status, due_date, amount_due, version, updated_at)
           VALUES ($1, $2, $3, $4::text::date, $5, $6, $7)
           ON CONFLICT (invoice_id) DO UPDATE SET
             status = EXCLUDED.status, due_date = EXCLUDED.due_date, amount_due = EXCLUDED.amount_due,
             version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
           WHERE invoice_schedule.version < EXCLUDED.version""",
        d["invoiceId"], event.tenantid, d["status"], d["dueDate"], d["amountDue"],
        int(event.sequence or 1), event.time,
    )
