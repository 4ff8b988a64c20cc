"""Request bodies of the invoicing API (camelCase on the wire), and their translation into the
domain's field sets. Unknown fields are refused, so a typo is an error rather than ignored."""

import datetime as dt
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from shared.errors import Refused
from shared.money import UnsupportedCurrency, check_currency

from ..domain import events as ev
from ..domain.invoice import CREDIT_NOTE_REASONS, PAYMENT_METHODS

DRAFT_KEYS = set(ev.DraftFields.model_fields) - {"customer"}
Rate = Decimal  # a percentage, e.g. 18 or 7.5


class Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class DiscountIn(Body):
    percent: Decimal | None = Field(default=None, ge=0, le=100)
    amount: int | None = Field(default=None, ge=0)


class ItemIn(Body):
    description: str = Field(min_length=1, max_length=500)
    quantity: int = Field(default=1, gt=0, le=1_000_000_000)
    unit_amount: int = Field(ge=0, description="in the currency's minor unit, at most shared.limits.MAX_AMOUNT")
    tax_rate: Rate | None = Field(default=None, ge=0, le=100)
    discount: DiscountIn | None = None

    def to_line(self) -> ev.LineData:
        return ev.LineData.model_validate(self.model_dump(exclude_none=True))


def currency_or_error(value: str | None) -> str | None:
    return None if value is None else currency(value)


def currency(value: str) -> str:
    try:
        return check_currency(value)
    except UnsupportedCurrency as exc:
        raise Refused("currency_unsupported", str(exc), field="currency") from exc


class InvoiceFieldsIn(Body):
    """What a draft holds; every field optional so PATCH can send only what changes."""

    customer_id: str | None = Field(default=None, min_length=1, max_length=100)
    due_date: date | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    items: list[ItemIn] | None = Field(default=None, min_length=1, max_length=500)
    tax_rate: Rate | None = Field(default=None, ge=0, le=100)
    tax_inclusive: bool | None = None
    discount: DiscountIn | None = None
    notes: str | None = Field(default=None, max_length=5000)
    po_number: str | None = Field(default=None, max_length=100)
    reference: str | None = Field(default=None, min_length=1, max_length=100)
    allow_partial_payments: bool | None = None
    return_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")
    auto_collection: bool | None = None
    metadata: dict[str, str] | None = Field(default=None, max_length=50)

    def draft_fields(self) -> ev.DraftFields:
        """The domain fields actually sent (so PATCH replaces only those)."""
        sent = self.model_dump(exclude_unset=True, include=DRAFT_KEYS)
        if self.items is not None:  # whole lines, defaults included
            sent["items"] = [item.model_dump(exclude_none=True) for item in self.items]
        if "currency" in sent:
            sent["currency"] = currency_or_error(sent["currency"])
        return ev.DraftFields.model_validate(sent)


class ImportInvoiceIn(InvoiceFieldsIn):
    number: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")  # no control characters
    issued_on: date
    status: Literal["PENDING", "PAID", "VOID"] = "PAID"
    amount_paid: int = Field(default=0, ge=0)
    customer_id: str = Field(min_length=1, max_length=100)
    items: list[ItemIn] = Field(min_length=1, max_length=500)


class RecordPaymentIn(Body):
    amount: int | None = Field(default=None, gt=0, description="defaults to the amount due")
    method: Literal[PAYMENT_METHODS] = Field(  # type: ignore[valid-type]
        default="other",
        validation_alias=AliasChoices("method", "paymentMethod"),
        description="how the money came; `paymentMethod` (NovaBilling's name) is accepted too",
    )
    reference: str | None = Field(default=None, max_length=200)
    date: dt.date | None = Field(default=None, description="when the money was received")


class ReasonIn(Body):
    reason: str | None = Field(default=None, max_length=500)


class CreateCreditNoteIn(Body):
    """Chargebee's credit note made by hand against an invoice with money due: `amount` of it is
    no longer owed (type adjustment)."""

    invoice_id: str = Field(min_length=1, max_length=100)
    amount: int = Field(gt=0, description="in the currency's minor unit, at most the amount due")
    reason_code: Literal[CREDIT_NOTE_REASONS] = Field(  # type: ignore[valid-type]
        validation_alias=AliasChoices("reasonCode", "reason_code", "createReasonCode")
    )
    type: Literal["adjustment"] = "adjustment"
    reason: str | None = Field(default=None, max_length=500, description="free text shown on the note")


class AddressIn(Body):
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, min_length=2, max_length=2)


class CustomerFieldsIn(Body):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    external_id: str | None = Field(default=None, min_length=1, max_length=200, description="your id for them; unique")
    country: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2, e.g. NG")
    phone: str | None = Field(default=None, max_length=40, pattern=r"^\+?[0-9][0-9 ().-]{3,39}$")
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    billing_address: AddressIn | None = None
    tax_id: str | None = Field(default=None, max_length=50)
    auto_collection: bool | None = None
    net_term_days: int | None = Field(default=None, ge=0, le=365)
    metadata: dict[str, str] | None = Field(default=None, max_length=50)

    @field_validator("email")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return v.lower() if v else v

    @field_validator("country")
    @classmethod
    def _upper(cls, v: str | None) -> str | None:
        return v.upper() if v else v

    def customer_fields(self) -> ev.CustomerFields:
        sent = self.model_dump(exclude_unset=True, by_alias=False)
        if "currency" in sent:
            sent["currency"] = currency_or_error(sent["currency"])
        if sent.get("billing_address") is not None and self.billing_address is not None:  # the one address
            sent["billing_address"] = self.billing_address.model_dump(by_alias=True, exclude_none=True)
        return ev.CustomerFields.model_validate(sent)


class CreateCustomerIn(CustomerFieldsIn):
    name: str = Field(min_length=1, max_length=200)


class InlineCustomerIn(CreateCustomerIn):
    """ZevPay's customer on the invoice itself: the tenant's customer with this e-mail, or a new one."""

    email: str = Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class CreateInvoiceIn(InvoiceFieldsIn):
    """`customerId`, or `customer` {name, email, ...} to find (by e-mail) or create the customer."""

    items: list[ItemIn] = Field(min_length=1, max_length=500)
    customer: InlineCustomerIn | None = None

    @model_validator(mode="after")
    def _one_customer(self) -> "CreateInvoiceIn":
        if (self.customer_id is None) == (self.customer is None):
            raise Refused(
                "customer_required", "Send customerId, or customer with name and email (not both).", field="customerId"
            )
        return self


Interval = Literal["day", "week", "month", "year"]
NOVA_INTERVALS: dict[str, tuple[Interval, int]] = {
    "MONTHLY": ("month", 1),
    "QUARTERLY": ("month", 3),
    "YEARLY": ("year", 1),
}


class PriceIn(Body):
    currency: str = Field(min_length=3, max_length=3)
    amount: int = Field(ge=0, description="per period, in the currency's minor unit")


class PriceChangeIn(Body):
    amount: int = Field(ge=0, description="per period from the next period on, in the currency's minor unit")


class PlanFieldsIn(Body):
    """A plan's fields; PATCH sends only what changes. `billingInterval` is NovaBilling's
    MONTHLY, QUARTERLY or YEARLY, another way to say interval and intervalCount."""

    code: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    features: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(default=None, max_length=50)
    interval: Interval | None = None
    interval_count: int | None = Field(default=None, ge=1)
    billing_interval: Literal["MONTHLY", "QUARTERLY", "YEARLY"] | None = None
    trial_days: int | None = Field(default=None, ge=0)
    is_active: bool | None = None
    metadata: dict[str, str] | None = Field(default=None, max_length=50)

    @model_validator(mode="after")
    def _one_interval(self) -> "PlanFieldsIn":
        if self.billing_interval is None:
            return self
        interval, count = NOVA_INTERVALS[self.billing_interval]
        if (self.interval or interval, self.interval_count or count) != (interval, count):
            raise Refused(
                "interval_invalid", "billingInterval and interval/intervalCount disagree.", field="billingInterval"
            )
        self.interval, self.interval_count = interval, count
        return self

    def plan_fields(self) -> ev.PlanFields:
        sent = self.model_dump(exclude_unset=True, exclude={"billing_interval"})
        if self.billing_interval is not None:
            sent["interval"], sent["interval_count"] = self.interval, self.interval_count
        return ev.PlanFields.model_validate(sent)


class CreatePlanIn(PlanFieldsIn):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="your name for it: lowercase, unique")
    name: str = Field(min_length=1, max_length=200)
    prices: list[PriceIn] = Field(default_factory=list, max_length=50)

    def plan_fields(self) -> ev.PlanFields:
        f = super().plan_fields()
        defaults = {"interval": "month", "interval_count": 1, "trial_days": 0, "is_active": True, "features": []}
        return f.model_copy(update={k: v for k, v in defaults.items() if getattr(f, k) is None})

    def price_pairs(self) -> list[tuple[str, int]]:
        return [(currency(p.currency), p.amount) for p in self.prices]


class CreateSubscriptionIn(Body):
    customer_id: str = Field(min_length=1, max_length=100)
    plan_id: str = Field(min_length=1, max_length=100)
    currency: str = Field(min_length=3, max_length=3)
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    start_date: dt.datetime | None = Field(
        default=None, description="today (the default) or up to a year back: the periods since are billed"
    )
    trial_days: int | None = Field(default=None, ge=0, le=730, description="defaults to the plan's")
    metadata: dict[str, str] | None = Field(default=None, max_length=50)


class CancelSubscriptionIn(Body):
    cancel_at: Literal["now", "period_end"] = Field(default="now", description="NovaBilling's cancelAt")
    reason: str | None = Field(default=None, max_length=500)


class ChangePlanIn(Body):
    new_plan_id: str = Field(
        min_length=1, max_length=100, validation_alias=AliasChoices("newPlanId", "planId", "new_plan_id")
    )
    prorate: bool = Field(default=True, description="charge the rest of the period on the new plan, credit the old")
    at: Literal["now", "period_end"] = Field(default="now", description="when the change takes effect")
