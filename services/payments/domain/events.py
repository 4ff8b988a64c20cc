"""Payments' event contracts (docs/events.md, billing.payments). Every event carries the facts
of the event and the `payment` snapshot as it is after it. Field names are camelCase."""

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from shared import topics
from shared.registry import EventRegistry

STREAM_TOPICS = {"payment": topics.PAYMENTS}

PENDING, PROCESSING, SUCCEEDED, FAILED = "PENDING", "PROCESSING", "SUCCEEDED", "FAILED"
REFUNDED, PARTIALLY_REFUNDED = "REFUNDED", "PARTIALLY_REFUNDED"
MANUAL = "manual"  # the provider of money received outside Billstream (mark-paid, record-payment)
STATUSES = (PENDING, PROCESSING, SUCCEEDED, FAILED, REFUNDED, PARTIALLY_REFUNDED)


class Contract(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class PaymentSnapshot(Contract):
    """The public payment resource."""

    id: str
    object: str = "payment"
    invoice_id: str
    customer_id: str | None = None
    status: str
    amount: int
    currency: str
    amount_refunded: int = 0
    provider: str
    method: str
    failure_code: str | None = None
    failure_reason: str | None = None
    automatic: bool = False
    attempt: int = 1
    provider_reference: str | None = None
    paid_on: str | None = None  # the day a manual payment's money came, as recorded
    created_at: str
    updated_at: str


class PaymentCreated(Contract):
    payment: PaymentSnapshot


class PaymentProcessing(Contract):
    payment: PaymentSnapshot


class PaymentSucceeded(Contract):
    payment_id: str
    invoice_id: str
    amount: int
    currency: str
    provider: str
    method: str
    payment: PaymentSnapshot


class PaymentFailed(Contract):
    payment_id: str
    invoice_id: str
    amount: int
    reason_code: str
    reason: str
    automatic: bool
    attempt: int
    payment: PaymentSnapshot


class PaymentRefunded(Contract):
    payment_id: str
    invoice_id: str
    refund_id: str
    amount: int
    amount_refunded: int
    reason: str
    payment: PaymentSnapshot


registry = EventRegistry()
EVENT_MODELS: dict[str, type[Contract]] = {
    "payment.created": PaymentCreated,
    "payment.processing": PaymentProcessing,
    "payment.succeeded": PaymentSucceeded,
    "payment.failed": PaymentFailed,
    "payment.refunded": PaymentRefunded,
}
for _type, _model in EVENT_MODELS.items():
    registry.register(_type, _model)
