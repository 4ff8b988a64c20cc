"""Payments' application layer: load a payment stream, decide, append (one transaction), and
the charge jobs that talk to providers outside any transaction.

A charge is two steps so nothing is lost and nothing is charged twice: (1) payment.created and
a charge_jobs row commit together; (2) the job is sent to the provider with the payment's
idempotency key, retried with the same key after a timeout or crash, and its answer (or the
provider's callback, whichever comes first) is appended as payment.processing/succeeded/failed.
A provider refusing a retry for its key (KeyAlreadyUsed) is no decline: the job stays pending.
A one-off payment still unpaid on the provider's hosted form at its deadline ends as failed
`expired`, so it stops holding the invoice's balance.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from shared.aggregate import Aggregates, retry_on_conflict
from shared.errors import NotFound
from shared.failpoints import failpoint
from shared.ids import new_id
from shared.logs import bind_correlation, get_logger
from shared.vault import Vault

from ..domain.collection import Balance, amount_to_collect
from ..domain.payment import (
    ManualPayment,
    Outcome,
    Payment,
    StartPayment,
    decide_manual,
    decide_outcome,
    decide_processing,
    decide_start,
    fold,
)
from ..providers.base import (
    REQUIRES_ACTION,
    ChargeRequest,
    ChargeResult,
    Instrument,
    KeyAlreadyUsed,
    ProviderError,
    ProviderUnavailable,
    expired,
)
from . import repository as repo
from .accounts import Accounts
from .routing import Account
from .webhooks_in import callback_url

log = get_logger(__name__)
FINAL = ("SUCCEEDED", "FAILED", "REFUNDED", "PARTIALLY_REFUNDED")
RECONCILE_AFTER_S = 30  # look the charge up if no callback has settled it by then


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Method:
    """What a payment is charged with: a saved method, or an instrument typed on the hosted page."""

    type: str
    method_id: str | None = None
    instrument: Instrument | None = None


class Payments:
    def __init__(self, service, accounts: Accounts, vault: Vault) -> None:
        self.service, self.accounts, self.vault = service, accounts, vault
        self.aggregates: Aggregates = service.aggregates
        self.settings = service.settings

    @property
    def pool(self) -> asyncpg.Pool:
        return self.service.pool

    # -- the aggregate ---------------------------------------------------------------------

    async def read(self, conn, payment_id: str, tenant_id: str | None = None) -> tuple[Payment, str]:
        stream = await self.aggregates.load(conn, payment_id)
        if not stream.is_a("payment", tenant_id):
            raise NotFound("payment", payment_id)  # another tenant's payment does not exist here
        return fold(stream.history, payment_id), stream.tenant_id

    async def correlate(self, conn, payment_id: str) -> None:
        """Carry on under the correlation id of the request or event that started the payment,
        so its later events (from the worker or a provider callback) can be traced to it."""
        first = await repo.first_event(conn, payment_id)
        if first is not None:
            bind_correlation(first["cid"], causation_id=first["event_id"])

    async def _append(
        self, conn, tenant_id: str, state: Payment, decided: list[tuple[str, object]], at: datetime
    ) -> Payment:
        if not decided:
            return state
        state_after = Payment(state.version + len(decided), decided[-1][1].payment)
        pid, invoice_id = state_after.snapshot.id, state_after.snapshot.invoice_id
        # Keyed by invoice, so an invoice's payment events stay in order on one partition.
        await self.aggregates.append(
            conn, "payment", pid, state.version, decided, tenant_id=tenant_id, at=at, key=invoice_id
        )
        s = state_after.snapshot
        await repo.save_invoice_payment(conn, pid, invoice_id, tenant_id, s.amount, s.status)
        if s.status in FINAL:
            await repo.mark_charge_done(conn, pid)
        log.info(
            "payment events appended",
            payment_id=pid,
            invoice_id=invoice_id,
            types=[t for t, _ in decided],
            status=s.status,
        )
        return state_after

    # -- balances --------------------------------------------------------------------------

    async def invoice(self, conn, tenant_id: str, invoice_id: str, *, lock: bool = False) -> asyncpg.Record:
        row = await repo.find_payable_invoice(conn, tenant_id, invoice_id, lock=lock)
        if row is None:
            raise NotFound("invoice", invoice_id)
        return row

    async def balance(self, conn, inv: asyncpg.Record) -> Balance:
        unacknowledged = await repo.unacknowledged_amount(conn, inv["invoice_id"])
        return Balance(
            status=inv["status"],
            currency=inv["currency"],
            total=inv["total"],
            amount_due=inv["amount_due"],
            unacknowledged=int(unacknowledged),
            allow_partial=inv["allow_partial_payments"],
        )

    # -- starting a payment ----------------------------------------------------------------

    async def start(
        self,
        conn,
        tenant_id: str,
        invoice_id: str,
        *,
        method: Method,
        account: Account,
        amount: int | None = None,
        automatic: bool = False,
        attempt: int = 1,
        at: datetime | None = None,
        return_url: str | None = None,
        inline: bool = False,
    ) -> Payment:
        """payment.created and its charge job, in the caller's transaction. With `inline` the
        caller sends the job itself right after commit (run_job(claimed=True)): the worker leaves
        it alone for one lease, then takes over if the caller died."""
        at = at or now()
        inv = await self.invoice(conn, tenant_id, invoice_id, lock=True)  # one start per invoice at a time
        amount = amount_to_collect(await self.balance(conn, inv), amount)
        payment_id = new_id("pay")
        cmd = StartPayment(
            payment_id,
            invoice_id,
            inv["customer_id"],
            amount,
            inv["currency"],
            account.provider,
            method.type,
            automatic,
            attempt,
        )
        state = await self._append(conn, tenant_id, Payment(), decide_start(Payment(), cmd, at), at)
        await repo.insert_charge_job(
            conn,
            payment_id,
            tenant_id,
            account.account_id,
            method.method_id,
            self.vault.encrypt({"type": method.instrument.type, "number": method.instrument.number})
            if method.instrument
            else None,
            f"billstream_{payment_id}",
            return_url and return_url.replace("{payment_id}", payment_id),
            self.lease_s if inline else 0.0,
        )
        if not inline:
            await repo.notify_charge_job(conn, payment_id)
        return state

    @property
    def lease_s(self) -> float:
        """How long a claimed job is left alone: longer than any provider call can take."""
        return float(self.settings.provider_timeout_s * 3 + 5)

    async def fail_unchargeable(
        self, conn, tenant_id: str, inv: asyncpg.Record, code: str, reason: str, *, attempt: int, at: datetime
    ) -> Payment:
        """An automatic collection that could not even be tried (no saved method): still a
        payment.failed, so invoicing and dunning hear about it."""
        amount = (await self.balance(conn, inv)).remaining  # > 0: the caller checked
        cmd = StartPayment(
            new_id("pay"), inv["invoice_id"], inv["customer_id"], amount, inv["currency"], "none", "none", True, attempt
        )
        state = await self._append(conn, tenant_id, Payment(), decide_start(Payment(), cmd, at), at)
        return await self._append(
            conn, tenant_id, state, decide_outcome(state, Outcome(False, code=code, reason=reason), at), at
        )

    # -- recording what the provider says --------------------------------------------------

    async def record(
        self,
        conn,
        payment_id: str,
        status: str,
        *,
        reference: str | None = None,
        code: str | None = None,
        reason: str | None = None,
        at: datetime | None = None,
        charged: tuple[int, str] | None = None,
    ) -> Payment:
        """`charged`: what the provider says was paid, if it says; a success for another amount
        or currency is recorded as failed `amount_mismatch` (anyone who knows a provider's
        reference for the payment may have paid it something else)."""
        at = at or now()
        state, tenant_id = await self.read(conn, payment_id)
        await self.correlate(conn, payment_id)
        expected = (state.snapshot.amount, state.snapshot.currency)
        if status == "succeeded" and charged is not None and charged != expected:
            log.warning("provider charged another amount", payment_id=payment_id, charged=charged, expected=expected)
            status, code = "failed", "amount_mismatch"
            reason = f"The provider took {charged[0]} {charged[1]} for a payment of {expected[0]} {expected[1]}."
        if status == "processing" or status == "requires_action":
            decided = decide_processing(state, reference, at)
        elif status in ("succeeded", "failed"):
            decided = decide_outcome(state, Outcome(status == "succeeded", reference, code, reason), at)
        else:
            return state
        return await self._append(conn, tenant_id, state, decided, at)

    async def record_manual(self, conn, tenant_id: str, cmd: ManualPayment) -> Payment:
        """The payment behind an offline payment invoicing recorded, in the transaction of the
        consumer that heard of it; a redelivery finds it recorded and adds nothing."""
        stream = await self.aggregates.load(conn, cmd.payment_id)
        state = fold(stream.history, cmd.payment_id)
        at = now()
        return await self._append(conn, tenant_id, state, decide_manual(state, cmd, at), at)

    async def record_result(self, payment_id: str, result: ChargeResult) -> Payment:
        async def record(conn) -> Payment:
            await repo.set_provider_reference(conn, payment_id, result.provider_reference)
            return await self.record(
                conn,
                payment_id,
                result.status,
                reference=result.provider_reference,
                code=result.failure_code,
                reason=result.failure_reason,
                charged=result.charged,
            )

        # A callback may append at the same moment: read again and decide again.
        return await retry_on_conflict(
            self.pool, record, attempts=3, gave_up=lambda: RuntimeError(f"payment {payment_id} kept changing under us")
        )

    # -- charge jobs -----------------------------------------------------------------------

    async def run_job(self, payment_id: str, *, claimed: bool = False) -> ChargeResult | None:
        """Send (or look up) one due charge job; None if it was not due or is being run elsewhere.
        `claimed`: the caller created it with start(inline=True) and runs it now."""
        job = await repo.claim_charge_job(self.pool, payment_id, self.lease_s, claimed)
        if job is None:
            return None
        async with self.pool.acquire() as conn:
            state, tenant_id = await self.read(conn, payment_id)
            await self.correlate(conn, payment_id)
            account = await self.accounts.get(conn, tenant_id, job["account_id"])
            token, email = None, None
            if job["method_id"]:
                token = self.vault.decrypt(await repo.method_token(conn, job["method_id"]))
            inv = await repo.invoice_snapshot(conn, state.snapshot.invoice_id)
            if inv and inv["snapshot"]:
                email = (inv["snapshot"].get("customer") or {}).get("email")
        if state.status in FINAL:
            await repo.mark_charge_done(self.pool, payment_id)
            return None
        provider = self.accounts.adapter(account)
        s = state.snapshot
        # A one-off payment (no saved method: the customer is at the hosted page, or sent on to the
        # provider's own form) has until `expires_at` to be paid; a hosted session expires then too.
        expires_at = (
            None if job["method_id"] else job["created_at"] + timedelta(seconds=self.settings.hosted_checkout_expiry_s)
        )
        overdue = expires_at is not None and now() >= expires_at
        failpoint("payments.before_charge")
        try:
            # Already taken (a lost M-Pesa push answer leaves "": taken, reference unknown): only
            # ask how it went, never send it again.
            if job["provider_reference"] is not None:
                result = await provider.get_status(job["provider_reference"])
            elif not account.active:  # deactivated or deleted before this charge was sent
                raise ProviderError(
                    "provider_inactive", "The payment's provider account was deactivated before it was charged."
                )
            elif overdue and not job["instrument"]:
                # No form was ever shown (we never heard back from creating it): opening one now
                # would only hand the customer a page for a payment that is over.
                result = expired("")
            else:
                instrument = self.vault.decrypt(job["instrument"]) if job["instrument"] else None
                req = ChargeRequest(
                    idempotency_key=job["idempotency_key"],
                    reference=payment_id,
                    amount=s.amount,
                    currency=s.currency,
                    callback_url=callback_url(self.settings.own_url, account),
                    instrument=Instrument(**instrument) if instrument else None,
                    method_token=token,
                    customer_email=email,
                    return_url=job["return_url"],
                    expires_at=expires_at,
                )
                result = await (provider.charge_saved_method(req) if token else provider.start_payment(req))
        except ProviderUnavailable as exc:  # KeyAlreadyUsed too: a refused retry is never a decline
            if not (overdue and isinstance(exc, KeyAlreadyUsed)):
                backoff = min(2 ** (job["attempts"] - 1), 60)
                log.warning(
                    "provider unavailable, charge will be retried with the same key",
                    payment_id=payment_id,
                    error=exc.message,
                    retry_in_s=backoff,
                )
                await repo.retry_charge_job(self.pool, payment_id, float(backoff), exc.message)
                return None
            # The provider knows the key but shows no paid charge for it, and the checkout is over.
            result = expired(job["provider_reference"] or "")
        except ProviderError as exc:
            if job["provider_reference"] is not None:  # only a look-up failed: the charge itself stands
                log.warning("charge status look-up refused", payment_id=payment_id, error=exc.message)
                await repo.retry_charge_job(self.pool, payment_id, float(RECONCILE_AFTER_S * 10), exc.message)
                return None
            log.info("provider refused the charge", payment_id=payment_id, code=exc.code)
            async with self.pool.acquire() as conn, conn.transaction():
                await self.record(conn, payment_id, "failed", code=exc.code, reason=exc.message)
            return ChargeResult(
                provider_reference="", status="failed", failure_code=exc.code, failure_reason=exc.message
            )
        if overdue and result.status == REQUIRES_ACTION:  # the customer never finished the provider's form
            result = expired(result.provider_reference)
        failpoint("payments.after_charge")  # the provider has the charge, nothing of it is recorded yet
        after = await self.record_result(payment_id, result)
        if after.status not in FINAL:
            look_again = RECONCILE_AFTER_S
            if expires_at is not None and not overdue:  # a hosted checkout: at its deadline at the latest
                look_again = min(look_again, max((expires_at - now()).total_seconds(), 0) + 1)
            await repo.look_again(self.pool, payment_id, float(look_again))
        return result

    async def due_jobs(self, limit: int = 20) -> list[str]:
        return await repo.due_charge_jobs(self.pool, limit)
