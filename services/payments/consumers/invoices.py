"""billing.invoices → payable_invoices, the read model collection and checkout work from."""

import asyncpg

from shared.envelope import CloudEvent


async def on_invoice_event(conn: asyncpg.Connection, event: CloudEvent) -> None:
    if event.type != "invoice.created":
        return
    d = event.data
    await conn.execute(
        """INSERT INTO payable_invoices (invoice_id, tenant_id, customer_id, status, currency, total,
                                         amount_due, version, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (invoice_id) DO UPDATE SET
             status = EXCLUDED.status, total = EXCLUDED.total, amount_due = EXCLUDED.amount_due,
             version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
           WHERE payable_invoices.version < EXCLUDED.version""",
        d["invoiceId"], event.tenantid, d["customerId"], d["status"], d["currency"], d["total"],
        d["amountDue"], int(event.sequence or 1), event.time,
    )
