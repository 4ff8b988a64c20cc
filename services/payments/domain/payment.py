"""The payment aggregate: pure decide/evolve, no I/O and no clock (time is passed in).

Every event carries the payment snapshot as it is after the event, so evolve just takes it.
Provider callbacks can arrive late, twice or out of order: decisions are idempotent and a final
state is never undone, except that money the provider did take (a late success after we had
recorded a failure) is recorded, because the invoice has to know.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from shared.errors import Conflict, Refused

from .events import (
    FAILED,
    MANUAL,
    PARTIALLY_REFUNDED,
    PENDING,
    PROCESSING,
    REFUNDED,
    SUCCEEDED,
    PaymentCreated,
    PaymentFailed,
    PaymentProcessing,
    PaymentRefunded,
    PaymentSnapshot,
    PaymentSucceeded,
)

REFUNDABLE = (SUCCEEDED, PARTIALLY_REFUNDED)


@dataclass(frozen=True)
class Payment:
    version: int = 0
    snapshot: PaymentSnapshot | None = None

    @property
    def status(self) -> str | None:
        return self.snapshot.status if self.snapshot else None

    @property
    def refundable(self) -> int:
        s = self.snapshot
        return s.amount - s.amount_refunded if s and s.status in REFUNDABLE else 0


@dataclass(frozen=True)
class StartPayment:
    payment_id: str
    invoice_id: str
    customer_id: str | None
    amount: int
    currency: str
    provider: str
    method: str  # card, mobile_money, ...
    automatic: bool = False
    attempt: int = 1


@dataclass(frozen=True)
class ManualPayment:
    """Money the merchant received outside Billstream and recorded on the invoice."""

    payment_id: str  # the id invoicing gave it (invoice.payment_received)
    invoice_id: str
    customer_id: str | None
    amount: int
    currency: str
    method: str  # cash, check, bank_transfer, ...
    reference: str | None
    paid_on: str | None


@dataclass(frozen=True)
class Outcome:
    """What the provider says happened to the charge."""

    succeeded: bool
    reference: str | None = None
    code: str | None = None
    reason: str | None = None


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def decide_start(state: Payment, cmd: StartPayment, at: datetime) -> list[tuple[str, BaseModel]]:
    if state.version:
        raise Conflict("payment_exists", f"Payment {cmd.payment_id} already exists.")
    if cmd.amount <= 0:
        raise Refused("amount_invalid", "The amount must be a positive integer in minor units.", field="amount")
    snap = PaymentSnapshot(
        id=cmd.payment_id,
        invoice_id=cmd.invoice_id,
        customer_id=cmd.customer_id,
        status=PENDING,
        amount=cmd.amount,
        currency=cmd.currency,
        provider=cmd.provider,
        method=cmd.method,
        automatic=cmd.automatic,
        attempt=cmd.attempt,
        created_at=_stamp(at),
        updated_at=_stamp(at),
    )
    return [("payment.created", PaymentCreated(payment=snap))]


def decide_manual(state: Payment, cmd: ManualPayment, at: datetime) -> list[tuple[str, BaseModel]]:
    """A payment recorded as it already is: SUCCEEDED, provider `manual`. Recorded once."""
    if state.version:
        return []
    snap = PaymentSnapshot(
        id=cmd.payment_id,
        invoice_id=cmd.invoice_id,
        customer_id=cmd.customer_id,
        status=SUCCEEDED,
        amount=cmd.amount,
        currency=cmd.currency,
        provider=MANUAL,
        method=cmd.method,
        provider_reference=cmd.reference,
        paid_on=cmd.paid_on,
        created_at=_stamp(at),
        updated_at=_stamp(at),
    )
    succeeded = PaymentSucceeded(
        payment_id=cmd.payment_id,
        invoice_id=cmd.invoice_id,
        amount=cmd.amount,
        currency=cmd.currency,
        provider=MANUAL,
        method=cmd.method,
        payment=snap,
    )
    return [("payment.succeeded", succeeded)]


def decide_processing(state: Payment, reference: str | None, at: datetime) -> list[tuple[str, BaseModel]]:
    """The provider accepted the charge and is working on it."""
    s = state.snapshot
    if s is None or s.status != PENDING:  # state.status, spelled so that s is known to be there
        return []  # already further along (callbacks can overtake the API answer)
    snap = s.model_copy(
        update={"status": PROCESSING, "provider_reference": reference or s.provider_reference, "updated_at": _stamp(at)}
    )
    return [("payment.processing", PaymentProcessing(payment=snap))]


def decide_outcome(state: Payment, outcome: Outcome, at: datetime) -> list[tuple[str, BaseModel]]:
    s = state.snapshot
    if s is None:
        raise ValueError("no such payment")
    reference = outcome.reference or s.provider_reference
    if outcome.succeeded:
        if s.status in (SUCCEEDED, REFUNDED, PARTIALLY_REFUNDED):
            return []  # duplicate callback
        snap = s.model_copy(
            update={
                "status": SUCCEEDED,
                "failure_code": None,
                "failure_reason": None,
                "provider_reference": reference,
                "updated_at": _stamp(at),
            }
        )
        return [
            (
                "payment.succeeded",
                PaymentSucceeded(
                    payment_id=s.id,
                    invoice_id=s.invoice_id,
                    amount=s.amount,
                    currency=s.currency,
                    provider=s.provider,
                    method=s.method,
                    payment=snap,
                ),
            )
        ]
    if s.status not in (PENDING, PROCESSING):
        return []  # a failure never undoes a success, and a second failure adds nothing
    code = outcome.code or "payment_failed"
    reason = outcome.reason or "The payment provider declined the payment."
    snap = s.model_copy(
        update={
            "status": FAILED,
            "failure_code": code,
            "failure_reason": reason,
            "provider_reference": reference,
            "updated_at": _stamp(at),
        }
    )
    return [
        (
            "payment.failed",
            PaymentFailed(
                payment_id=s.id,
                invoice_id=s.invoice_id,
                amount=s.amount,
                reason_code=code,
                reason=reason,
                automatic=s.automatic,
                attempt=s.attempt,
                payment=snap,
            ),
        )
    ]


def check_refund(state: Payment, amount: int | None, reserved: int = 0) -> int:
    """The amount to refund (all that is left when not given); raises when it cannot be.
    `reserved`: refunds already asked of the provider but not yet recorded."""
    s = state.snapshot
    if s is None:
        raise ValueError("no such payment")
    if s.status not in REFUNDABLE:
        raise Conflict("payment_not_refundable", f"Only succeeded payments can be refunded; this one is {s.status}.")
    left = s.amount - s.amount_refunded - reserved
    if left <= 0 and reserved:
        raise Conflict("refund_in_progress", "The rest of this payment is already being refunded.")
    amount = left if amount is None else amount
    if amount <= 0:
        raise Refused("amount_invalid", "The refund amount must be a positive integer in minor units.", field="amount")
    if amount > left:
        raise Refused(
            "refund_exceeds_payment",
            f"Only {left} ({s.currency} minor units) of this payment can still be refunded.",
            field="amount",
        )
    return amount


def decide_refund(
    state: Payment, refund_id: str, amount: int, reason: str, at: datetime
) -> list[tuple[str, BaseModel]]:
    """Record a refund the provider has made (check_refund was asked before calling it)."""
    s = state.snapshot
    if s is None:  # what check_refund raises first, raised here so that s is known to be there
        raise ValueError("no such payment")
    amount = check_refund(state, amount)
    total = s.amount_refunded + amount
    snap = s.model_copy(
        update={
            "amount_refunded": total,
            "status": REFUNDED if total == s.amount else PARTIALLY_REFUNDED,
            "updated_at": _stamp(at),
        }
    )
    return [
        (
            "payment.refunded",
            PaymentRefunded(
                payment_id=s.id,
                invoice_id=s.invoice_id,
                refund_id=refund_id,
                amount=amount,
                amount_refunded=total,
                reason=reason,
                payment=snap,
            ),
        )
    ]


def evolve(state: Payment, event_type: str, data: object) -> Payment:
    snapshot = getattr(data, "payment", None)
    return Payment(version=state.version + 1, snapshot=snapshot or state.snapshot)


def fold(history: Sequence[tuple[str, object, datetime]], subject: str) -> Payment:
    """The payment from its stream: (type, event, time) in order, like every fold; each event
    carries the whole snapshot, which names the payment (`subject`)."""
    state = Payment()
    for event_type, data, _ in history:
        state = evolve(state, event_type, data)
    return state
