"""Refunds, in two steps like charges: a refund_jobs row commits first (reserving the amount),
then the provider is called with the key `billstream_<refundId>` and payment.refunded appended.
A timeout or crash in between leaves the job for the worker, which repeats the call with the same
key, so a refund is never lost and never made twice.

A `manual` payment's refund is money the merchant returned outside Billstream (Chargebee's
record_refund): there is no provider to call, so payment.refunded is appended at once."""

from shared import auth
from shared.aggregate import retry_on_conflict
from shared.errors import Conflict, Declined, Refused
from shared.idempotency import mark_committed
from shared.ids import new_id
from shared.logs import get_logger

from ..domain.events import MANUAL
from ..domain.payment import check_refund, decide_refund
from ..providers.base import ProviderError, ProviderUnavailable
from . import repository as repo
from .handlers import Payments, now

log = get_logger(__name__)


def allocate(payments: list[tuple[str, int]], amount: int | None) -> list[tuple[str, int]]:
    """(payment id, amount) to refund from each of `payments` (newest first, with what is left
    of each), so that together they make `amount`; all that is left when None."""
    available = sum(left for _, left in payments if left > 0)
    if available <= 0:
        raise Conflict("invoice_not_refundable", "No payment of this invoice has money left to refund.")
    want = available if amount is None else amount
    if want > available:
        raise Refused(
            "refund_exceeds_payments",
            f"Only {available} (minor units) of this invoice's payments can still be refunded.",
            field="amount",
        )
    plan = []
    for payment_id, left in payments:
        if want <= 0:
            break
        if left > 0:
            part = min(left, want)
            plan.append((payment_id, part))
            want -= part
    return plan


def _part(tenant_id: str, sent: dict, reason: str, status: str, **more) -> dict:
    """An invoice refund's part that send() did not hand back a view of."""
    return {
        "object": "refund",
        "livemode": auth.livemode(tenant_id),
        **sent,
        "reason": reason,
        "status": status,
        **more,
    }


class Refunds:
    def __init__(self, payments: Payments) -> None:
        self.payments = payments

    @property
    def pool(self):
        return self.payments.pool

    async def request(self, tenant_id: str, payment_id: str, amount: int | None, reason: str) -> dict:
        async with self.pool.acquire() as conn, conn.transaction():
            reserved = await self._reserve(conn, tenant_id, payment_id, amount, reason)
        return reserved if isinstance(reserved, dict) else await self.send(reserved, claimed=True)

    async def refund_invoice(self, tenant_id: str, invoice_id: str, amount: int | None, reason: str) -> list[dict]:
        """Chargebee's invoice-level refund: `amount` (all that can be given back if None) taken
        from the invoice's payments newest first, one refund per payment it touches. Every part
        is checked and reserved in one transaction (all or none), then the provider refunds are
        sent; a part the provider refuses is reported `failed` beside the others."""
        async with self.pool.acquire() as conn, conn.transaction():
            inv = await self.payments.invoice(conn, tenant_id, invoice_id)  # 404 for one payments never heard of
            payments = await repo.refundable_payments(conn, tenant_id, invoice_id)
            plan = allocate([(r["payment_id"], int(r["left"])) for r in payments], amount)
            reserved = [(pid, part, await self._reserve(conn, tenant_id, pid, part, reason)) for pid, part in plan]
        done: list[dict] = []
        for payment_id, part, refund in reserved:
            if isinstance(refund, dict):  # a manual payment's, recorded already
                done.append(refund)
                continue
            sent = {"id": refund, "paymentId": payment_id, "amount": part, "currency": inv["currency"]}
            try:
                # None: the worker took the job meanwhile and finishes it, so it is on its way
                done.append(await self.send(refund, claimed=True) or _part(tenant_id, sent, reason, "pending"))
            except Declined as exc:
                done.append(_part(tenant_id, sent, reason, "failed", failureCode=exc.code, failureMessage=exc.message))
        return done

    async def _reserve(self, conn, tenant_id: str, payment_id: str, amount: int | None, reason: str) -> str | dict:
        """In the caller's transaction: check the refund and reserve it (a refund_jobs row, sent
        by the caller: its id is returned), or record a manual payment's refund at once (its view)."""
        # One refund decision per payment at a time, counting refunds still in flight. Lock
        # first, then read: a refund recorded while we waited must count against the limit.
        await repo.lock_invoice_payment(conn, payment_id)
        state, _ = await self.payments.read(conn, payment_id, tenant_id)
        in_flight = await repo.refunds_in_flight(conn, payment_id)
        amount = check_refund(state, amount, reserved=int(in_flight))
        # The reservation is the request's work: a retry after a crash past this point must not
        # reserve (and refund) a second time (make chaos caught it after a kill -9).
        await mark_committed(conn)
        refund_id = new_id("re")
        if state.snapshot.provider == MANUAL:  # money given back outside Billstream: nothing to send
            at = now()
            after = await self.payments._append(
                conn, tenant_id, state, decide_refund(state, refund_id, amount, reason, at), at
            )
            job = {"refund_id": refund_id, "tenant_id": tenant_id, "payment_id": payment_id}
            return self._view({**job, "amount": amount, "reason": reason}, after.snapshot, "succeeded")
        if not (state.snapshot.provider_reference or await repo.charge_reference(conn, payment_id)):
            raise Conflict("payment_not_refundable", "This payment has no provider charge to refund.")
        await repo.insert_refund_job(conn, refund_id, payment_id, tenant_id, amount, reason, self.payments.lease_s)
        return refund_id

    async def send(self, refund_id: str, *, claimed: bool = False) -> dict | None:
        job = await repo.claim_refund_job(self.pool, refund_id, self.payments.lease_s, claimed)
        if job is None:
            return None
        async with self.pool.acquire() as conn:
            state, tenant_id = await self.payments.read(conn, job["payment_id"])
            await self.payments.correlate(conn, job["payment_id"])
            charge = await repo.charge_account(conn, job["payment_id"])
            account = await self.payments.accounts.get(conn, tenant_id, charge["account_id"] if charge else None)
        reference = state.snapshot.provider_reference or (charge and charge["provider_reference"])
        try:
            await self.payments.accounts.adapter(account).refund(
                f"billstream_{refund_id}", reference, job["amount"], state.snapshot.currency
            )
        except ProviderUnavailable as exc:
            backoff = min(2 ** (job["attempts"] - 1), 300)
            log.warning(
                "provider unavailable, refund will be retried with the same key",
                refund_id=refund_id,
                error=exc.message,
                retry_in_s=backoff,
            )
            await repo.retry_refund_job(self.pool, refund_id, float(backoff), exc.message)
            return self._view(job, state.snapshot, "pending")
        except ProviderError as exc:
            log.warning("provider refused the refund", refund_id=refund_id, code=exc.code)
            await repo.refuse_refund_job(self.pool, refund_id, exc.message)
            raise Declined(exc.code, f"The payment provider refused the refund: {exc.message}") from exc

        async def record(conn):  # on the payment as it is now: another writer may have appended since
            current, _ = await self.payments.read(conn, job["payment_id"])
            at = now()
            current = await self.payments._append(
                conn, tenant_id, current, decide_refund(current, refund_id, job["amount"], job["reason"], at), at
            )
            await repo.refund_succeeded(conn, refund_id)
            return current

        state = await retry_on_conflict(
            self.pool,
            record,
            attempts=5,
            gave_up=lambda: RuntimeError(f"payment {job['payment_id']} kept changing under the refund"),
        )
        return self._view(job, state.snapshot, "succeeded")

    async def due(self, limit: int = 20) -> list[str]:
        return await repo.due_refund_jobs(self.pool, limit)

    @staticmethod
    def _view(job, payment, status: str) -> dict:
        return {
            "id": job["refund_id"],
            "object": "refund",
            "livemode": auth.livemode(job["tenant_id"]),
            "paymentId": job["payment_id"],
            "amount": job["amount"],
            "currency": payment.currency,
            "reason": job["reason"],
            "status": status,
            "payment": auth.with_livemode(payment.dump(), job["tenant_id"]),
        }
