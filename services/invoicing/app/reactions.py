"""What other services' facts do to an invoice: payments received, failed and refunded
(billing.payments), the due date passed and retries exhausted (billing.dunning). Each runs in
the consumer's transaction (the inbox's): a version conflict redelivers the event."""

from datetime import date

from shared.errors import NotFound
from shared.ids import new_id

from ..domain import invoice as inv
from . import repository as repo
from .invoices import Invoicing


async def _invoice_for_event(app: Invoicing, conn, tenant: str, invoice_id: str) -> inv.Invoice | None:
    try:
        return await app.load_invoice(conn, tenant, invoice_id, allow_deleted=True)
    except NotFound:
        return None  # not an invoice of ours (or not of this tenant): nothing to record


async def on_payment_succeeded(
    app: Invoicing,
    conn,
    tenant: str,
    invoice_id: str,
    *,
    payment_id: str,
    amount: int,
    method: str,
    manual: bool = False,
) -> None:
    if manual:  # an offline payment's own payment, back from payments: its mark-paid call waits for it
        await repo.offline_payment_recorded(conn, payment_id)
    state = await _invoice_for_event(app, conn, tenant, invoice_id)
    if state is None:
        return
    at = app.clock()
    facts = inv.decide_payment(state, payment_id=payment_id, amount=amount, method=method)
    await app.apply_overpayment(conn, tenant, state, facts, at)
    await app.record_invoice(conn, tenant, state, facts, at)


async def on_payment_failed(app: Invoicing, conn, tenant: str, invoice_id: str, **kw) -> None:
    state = await _invoice_for_event(app, conn, tenant, invoice_id)
    if state is not None:
        await app.record_invoice(conn, tenant, state, inv.decide_payment_failed(state, **kw), app.clock())


async def on_payment_refunded(
    app: Invoicing,
    conn,
    tenant: str,
    invoice_id: str,
    *,
    payment_id: str,
    refund_id: str,
    amount: int,
    reason: str | None,
) -> None:
    state = await _invoice_for_event(app, conn, tenant, invoice_id)
    if state is None or not state.exists:
        return
    at, cn_id = app.clock(), new_id("cn")
    facts = inv.decide_refund(state, payment_id=payment_id, refund_id=refund_id, amount=amount, credit_note_id=cn_id)
    note = await app.new_credit_note(conn, tenant, state, cn_id, "refund", amount, "refund", reason or "refund", at)
    await app.record_invoice(conn, tenant, state, facts, at, extra=[note])


async def on_due_date_passed(app: Invoicing, conn, tenant: str, invoice_id: str, due_date: date) -> None:
    state = await _invoice_for_event(app, conn, tenant, invoice_id)
    if state is not None:
        await app.record_invoice(conn, tenant, state, inv.decide_overdue(state, due_date), app.clock())


async def on_dunning_exhausted(app: Invoicing, conn, tenant: str, invoice_id: str, final_action: str) -> None:
    state = await _invoice_for_event(app, conn, tenant, invoice_id)
    if state is None:
        return
    at = app.clock()
    facts = inv.decide_dunning_exhausted(state, final_action)
    await app.return_credits(conn, tenant, state, facts, at)
    await app.record_invoice(conn, tenant, state, facts, at)
