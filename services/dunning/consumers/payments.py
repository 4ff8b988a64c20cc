"""billing.payments → retries: an automatic collection that failed starts or continues dunning;
one that succeeded ends it. Payment events for an invoice share its partition, so they arrive in
order; the inbox makes a redelivered one a no-op. A `manual` payment (an offline payment recorded
on the invoice) is left to invoicing's own events, which already told dunning of it."""

import asyncpg

from shared.envelope import CloudEvent

from ..app.handlers import DunningHandlers


def make_payment_consumer(handlers: DunningHandlers):
    async def on_payment_event(conn: asyncpg.Connection, event: CloudEvent) -> None:
        data = event.data
        invoice_id = data.get("invoiceId") or (data.get("payment") or {}).get("invoiceId")
        if not invoice_id or data.get("provider") == "manual":
            return
        if event.type == "payment.failed":
            await handlers.on_payment_failed(conn, event.tenantid, invoice_id, automatic=bool(data.get("automatic")))
        elif event.type == "payment.succeeded":
            amount = data.get("amount", (data.get("payment") or {}).get("amount", 0))
            await handlers.on_payment_succeeded(conn, event.tenantid, invoice_id, amount=int(amount))

    return on_payment_event
