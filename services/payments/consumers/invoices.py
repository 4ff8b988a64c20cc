"""billing.invoices → payable_invoices (the invoice snapshot collection and checkout work from),
automatic collection when an invoice is finalized for a customer with autoCollection, and the
`manual` payment behind each offline payment (mark-paid, record-payment).

Events carry the invoice snapshot in data["invoice"] (docs/events.md); `sequence` makes older or
repeated events lose. The flat invoice.created shape of the first skeleton is still read.
`make_invoice_consumer` closes over the service's Payments (no import of the wiring).
"""

import asyncpg

from shared.envelope import CloudEvent
from shared.logs import get_logger

from ..app import repository as repo
from ..app.collect import collect_automatically
from ..app.handlers import Payments
from ..domain.payment import ManualPayment

log = get_logger(__name__)


def _row(event: CloudEvent) -> dict | None:
    d = event.data
    inv = d.get("invoice")
    if isinstance(inv, dict):
        return {
            "invoice_id": inv["id"],
            "customer_id": inv.get("customerId") or (inv.get("customer") or {}).get("id") or "",
            "status": inv["status"],
            "currency": inv["currency"],
            "total": inv.get("total", 0),
            "amount_due": inv.get("amountDue", 0),
            "snapshot": inv,
            "allow_partial": bool(inv.get("allowPartialPayments")),
            "auto": bool(inv.get("autoCollection")),
        }
    if event.type == "invoice.created" and "invoiceId" in d:  # the skeleton's flat shape
        return {
            "invoice_id": d["invoiceId"],
            "customer_id": d["customerId"],
            "status": d["status"],
            "currency": d["currency"],
            "total": d["total"],
            "amount_due": d["amountDue"],
            "snapshot": None,
            "allow_partial": False,
            "auto": False,
        }
    return None


async def record_invoice(conn: asyncpg.Connection, event: CloudEvent) -> dict | None:
    """Upsert the event's snapshot into payable_invoices; the row read from it (None if it has none)."""
    row = _row(event)
    if row is None:
        return None
    await repo.upsert_payable_invoice(
        conn,
        row["invoice_id"],
        event.tenantid,
        row["customer_id"],
        row["status"],
        row["currency"],
        row["total"],
        row["amount_due"],
        int(event.sequence or 1),
        event.time,
        row["snapshot"],
        row["allow_partial"],
        row["auto"],
    )
    payment_id = event.data.get("paymentId")
    if event.type == "invoice.payment_received" and payment_id:
        # From now on the snapshot's amountDue counts this payment.
        await repo.acknowledge_payment(conn, row["invoice_id"], payment_id)
    return row


def manual_payment(event: CloudEvent, row: dict) -> ManualPayment | None:
    """The offline payment an invoice.payment_received records, if it is one: the part applied
    to the invoice. Money beyond the amount due is already the customer's credit (invoicing
    recorded it), so it is no part of this payment and cannot be refunded through it."""
    d = event.data
    if event.type != "invoice.payment_received" or not d.get("offline"):
        return None
    return ManualPayment(
        payment_id=d["paymentId"],
        invoice_id=row["invoice_id"],
        customer_id=row["customer_id"] or None,
        amount=int(d.get("applied", d["amount"])),
        currency=row["currency"],
        method=d.get("method") or "other",
        reference=d.get("reference"),
        paid_on=d.get("paidOn"),
    )


def make_invoice_consumer(payments: Payments):
    async def on_invoice_event(conn: asyncpg.Connection, event: CloudEvent) -> None:
        row = await record_invoice(conn, event)
        if row is None:
            return
        if event.type == "invoice.finalized" and row["auto"] and row["amount_due"] > 0:
            await collect_automatically(payments, conn, event.tenantid, row["invoice_id"], attempt=1)
        elif manual := manual_payment(event, row):
            await payments.record_manual(conn, event.tenantid, manual)

    return on_invoice_event
