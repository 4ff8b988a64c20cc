"""Invoicing's event contracts (docs/events.md): the facts of each event, at its current version.

The application adds the resource snapshot (`invoice`, `customer`) to each event's data after
deciding, so consumers and webhooks get the resource as it was after the event; the aggregate
itself is folded from the facts alone.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared import topics
from shared.registry import EventRegistry

STREAM_TOPICS = {
    "invoice": topics.INVOICES,
    "customer": topics.CUSTOMERS,
    "tenant": topics.TENANTS,
    "plan": topics.SUBSCRIPTIONS,
    "subscription": topics.SUBSCRIPTIONS,
}


class Contract(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class DiscountData(Contract):
    percent: Decimal | None = None
    amount: int | None = None


class LineData(Contract):
    description: str
    quantity: int
    unit_amount: int
    tax_rate: Decimal | None = None
    discount: DiscountData | None = None


class CustomerRef(Contract):
    id: str
    name: str
    email: str | None = None


class DraftFields(Contract):
    """Everything a draft holds that PATCH can replace."""

    customer: CustomerRef | None = None
    currency: str | None = None
    due_date: date | None = None
    items: list[LineData] | None = None
    tax_rate: Decimal | None = None
    tax_inclusive: bool | None = None
    discount: DiscountData | None = None
    notes: str | None = None
    po_number: str | None = None
    reference: str | None = None
    allow_partial_payments: bool | None = None
    return_url: str | None = None
    auto_collection: bool | None = None
    metadata: dict[str, str] | None = None
    subscription_id: str | None = None  # set by the subscription whose period it bills, never by PATCH


def field_names(model: type[BaseModel], aliases: list[str]) -> list[str]:
    """Attribute names for the camelCase names an update event lists in `changes`."""
    by_alias = {info.alias or name: name for name, info in model.model_fields.items()}
    return [by_alias.get(a, a) for a in aliases]


class InvoiceEvent(Contract):
    invoice: dict[str, Any] = Field(default_factory=dict)  # snapshot after the event


class InvoiceCreated(InvoiceEvent):
    fields: DraftFields


class InvoiceUpdated(InvoiceEvent):
    changes: list[str]
    fields: DraftFields


class InvoiceImported(InvoiceEvent):
    fields: DraftFields
    number: str
    issued_on: date
    amount_paid: int = 0
    status: str


class InvoiceFinalized(InvoiceEvent):
    number: str
    credits_applied: int = 0


class InvoiceSent(InvoiceEvent):
    pass


class PaymentReceived(InvoiceEvent):
    payment_id: str
    amount: int
    applied: int
    overpayment: int
    method: str
    reference: str | None = None
    paid_on: date | None = None
    offline: bool = False
    is_partial: bool
    is_fully_paid: bool
    amount_paid: int
    amount_due: int


class InvoicePaid(InvoiceEvent):
    pdf_url: str | None = None  # a signed link to the invoice PDF, for the receipt e-mail


class InvoiceOverdue(InvoiceEvent):
    due_date: date


class PaymentFailed(InvoiceEvent):
    payment_id: str | None = None
    reason_code: str | None = None
    reason: str | None = None
    attempt: int | None = None


class MarkedUncollectible(InvoiceEvent):
    pass


class InvoiceVoided(InvoiceEvent):
    reason: str | None = None
    credits_returned: int = 0


class WrittenOff(InvoiceEvent):
    amount: int
    credit_note_id: str


class InvoiceRefunded(InvoiceEvent):
    payment_id: str
    refund_id: str
    amount: int
    credit_note_id: str


class InvoiceAdjusted(InvoiceEvent):
    credit_note_id: str
    amount: int


class AdjustmentVoided(InvoiceEvent):
    credit_note_id: str
    amount: int


class InvoiceDeleted(InvoiceEvent):
    pass


class CreditNoteCreated(Contract):
    credit_note: dict[str, Any]


class CreditNoteVoided(CreditNoteCreated):
    pass


class CustomerFields(Contract):
    name: str | None = None
    email: str | None = None
    external_id: str | None = None  # the tenant's own id for the customer, unique per tenant
    country: str | None = None  # ISO 3166-1 alpha-2
    phone: str | None = None
    currency: str | None = None
    billing_address: dict[str, str] | None = None
    tax_id: str | None = None
    auto_collection: bool | None = None
    net_term_days: int | None = None
    metadata: dict[str, str] | None = None


class CustomerEvent(Contract):
    customer: dict[str, Any] = Field(default_factory=dict)


class CustomerCreated(CustomerEvent):
    fields: CustomerFields


class CustomerUpdated(CustomerEvent):
    changes: list[str]
    fields: CustomerFields


class CreditAdded(CustomerEvent):
    amount: int
    currency: str
    invoice_id: str | None = None
    reason: str


class CreditApplied(CustomerEvent):
    amount: int
    currency: str
    invoice_id: str


class CustomerDeleted(CustomerEvent):
    pass


class TenantCreated(Contract):
    name: str


class TenantUpdated(Contract):
    name: str


class ApiKeyCreated(Contract):
    key_id: str
    key_hash: str
    prefix: str
    mode: str


class ApiKeyRevoked(Contract):
    key_id: str


class PlanFields(Contract):
    """What a plan says besides its prices; every field optional so PATCH sends what changes."""

    code: str | None = None  # the tenant's own name for it, unique per tenant
    name: str | None = None
    description: str | None = None
    features: list[str] | None = None
    interval: str | None = None  # day, week, month or year
    interval_count: int | None = None  # periods are interval_count intervals long
    trial_days: int | None = None
    is_active: bool | None = None  # an inactive plan takes no new subscriptions
    metadata: dict[str, str] | None = None


class PriceData(Contract):
    price_id: str
    currency: str
    amount: int  # per period, in the currency's minor unit


class PlanEvent(Contract):
    plan: dict[str, Any] = Field(default_factory=dict)  # snapshot after the event


class PlanCreated(PlanEvent):
    fields: PlanFields
    prices: list[PriceData] = Field(default_factory=list)


class PlanUpdated(PlanEvent):
    changes: list[str]
    fields: PlanFields


class PriceAdded(PlanEvent):
    price: PriceData


class PriceChanged(PlanEvent):
    """A new version of the price: periods that begin from now on are billed at `amount`."""

    price_id: str
    amount: int
    previous_amount: int


class PriceRemoved(PlanEvent):
    price_id: str


class PlanDeleted(PlanEvent):
    pass


class PlanChoice(Contract):
    plan_id: str
    price_id: str


class SubscriptionEvent(Contract):
    subscription: dict[str, Any] = Field(default_factory=dict)  # snapshot after the event


class SubscriptionCreated(SubscriptionEvent):
    customer_id: str
    currency: str
    quantity: int
    plan: PlanChoice
    amount: int  # per unit and period
    interval: str
    interval_count: int
    anchor_day: int
    start: datetime
    trial_end: datetime | None = None
    period: int  # 0 in a trial, else 1
    period_end: datetime
    invoice_id: str | None = None  # the first period's, when there is no trial
    metadata: dict[str, str] = Field(default_factory=dict)


class SubscriptionRenewed(SubscriptionEvent):
    """A period began, billed on `invoice_id` (renewed: the previous one ended; resumed: after a pause)."""

    period: int
    period_start: datetime
    period_end: datetime
    plan: PlanChoice
    amount: int
    interval: str
    interval_count: int
    invoice_id: str


class SubscriptionResumed(SubscriptionRenewed):
    pass


class PlanChanged(SubscriptionEvent):
    """`effective` now (the rest of this period is on the new plan: `credit` for the unused part of
    the old price went to the customer's balance, `charge` for the rest on the new one was billed
    on `invoice_id`) or period_end (the next period begins on it)."""

    from_plan: PlanChoice
    plan: PlanChoice
    effective: str
    amount: int
    credit: int = 0
    charge: int = 0
    invoice_id: str | None = None


class SubscriptionCanceled(SubscriptionEvent):
    at_period_end: bool
    reason: str | None = None


class SubscriptionEnded(SubscriptionEvent):
    pass


class SubscriptionPaused(SubscriptionEvent):
    pass


class TrialEnding(SubscriptionEvent):
    trial_end: datetime


class SubscriptionPastDue(SubscriptionEvent):
    invoice_id: str


class SubscriptionRecovered(SubscriptionEvent):
    invoice_id: str


registry = EventRegistry()
registry.register("invoice.created", InvoiceCreated, version=2)


@registry.upcaster("invoice.created", from_version=1)
def _created_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 (the walking skeleton) was flat and knew only the customer's id."""
    return {
        "fields": {
            "customer": {"id": data["customerId"], "name": data["customerId"]},
            "currency": data["currency"],
            "dueDate": data["dueDate"],
            "metadata": data.get("metadata", {}),
            "items": [{k: i[k] for k in ("description", "quantity", "unitAmount")} for i in data["items"]],
        }
    }


_models: dict[str, type[BaseModel]] = {
    "invoice.updated": InvoiceUpdated,
    "invoice.imported": InvoiceImported,
    "invoice.finalized": InvoiceFinalized,
    "invoice.sent": InvoiceSent,
    "invoice.payment_received": PaymentReceived,
    "invoice.paid": InvoicePaid,
    "invoice.overdue": InvoiceOverdue,
    "invoice.payment_failed": PaymentFailed,
    "invoice.marked_uncollectible": MarkedUncollectible,
    "invoice.voided": InvoiceVoided,
    "invoice.written_off": WrittenOff,
    "invoice.refunded": InvoiceRefunded,
    "invoice.adjusted": InvoiceAdjusted,
    "invoice.adjustment_voided": AdjustmentVoided,
    "invoice.deleted": InvoiceDeleted,
    "customer.created": CustomerCreated,
    "customer.updated": CustomerUpdated,
    "customer.credit_added": CreditAdded,
    "customer.credit_applied": CreditApplied,
    "customer.deleted": CustomerDeleted,
    "plan.created": PlanCreated,
    "plan.updated": PlanUpdated,
    "plan.price_added": PriceAdded,
    "plan.price_changed": PriceChanged,
    "plan.price_removed": PriceRemoved,
    "plan.deleted": PlanDeleted,
    "subscription.created": SubscriptionCreated,
    "subscription.trial_ending": TrialEnding,
    "subscription.renewed": SubscriptionRenewed,
    "subscription.changed": PlanChanged,
    "subscription.paused": SubscriptionPaused,
    "subscription.resumed": SubscriptionResumed,
    "subscription.past_due": SubscriptionPastDue,
    "subscription.recovered": SubscriptionRecovered,
    "subscription.canceled": SubscriptionCanceled,
    "subscription.ended": SubscriptionEnded,
    "tenant.created": TenantCreated,
    "tenant.updated": TenantUpdated,
}
for _type, _model in _models.items():
    registry.register(_type, _model)
registry.register("credit_note.created", CreditNoteCreated, stream="invoice")  # on its invoice's stream
registry.register("credit_note.voided", CreditNoteVoided, stream="invoice")
registry.register("api_key.created", ApiKeyCreated, stream="tenant")
registry.register("api_key.revoked", ApiKeyRevoked, stream="tenant")
