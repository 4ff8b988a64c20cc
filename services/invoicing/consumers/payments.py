"""billing.payments → the invoice: money received, collection failures, refunds."""

from collections.abc import Callable

import asyncpg

from shared.envelope import CloudEvent

from ..app import reactions
from ..app.invoices import Invoicing


async def on_payment_event(app: Invoicing, conn: asyncpg.Connection, event: CloudEvent) -> None:
    d, tenant = event.data, event.tenantid
    invoice_id = d.get("invoiceId") or (d.get("payment") or {}).get("invoiceId")
    if not invoice_id:
        return
    if event.type == "payment.succeeded":
        await reactions.on_payment_succeeded(
            app,
            conn,
            tenant,
            invoice_id,
            payment_id=d["paymentId"],
            amount=int(d["amount"]),
            method=d.get("method") or d.get("provider") or "other",
            manual=d.get("provider") == "manual",
        )
    elif event.type == "payment.failed" and d.get("automatic"):
        await reactions.on_payment_failed(
            app,
            conn,
            tenant,
            invoice_id,
            payment_id=d.get("paymentId"),
            reason_code=d.get("reasonCode"),
            reason=d.get("reason"),
            attempt=d.get("attempt"),
        )
    elif event.type == "payment.refunded":
        await reactions.on_payment_refunded(
            app,
            conn,
            tenant,
            invoice_id,
            payment_id=d["paymentId"],
            refund_id=d["refundId"],
            amount=int(d["amount"]),
            reason=d.get("reason"),
        )


def make_payment_consumer(handlers: Callable[[], Invoicing]):
    """The consumer of billing.payments; `handlers()` is called per event, over the running pool."""

    async def on_payment(conn: asyncpg.Connection, event: CloudEvent) -> None:
        await on_payment_event(handlers(), conn, event)

    return on_payment
