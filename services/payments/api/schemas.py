"""Request bodies of the payments API (camelCase on the wire)."""

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


REFUND_REASON = "requested by the merchant"  # when the request names none (NovaBilling's reason is optional)


class RefundIn(Body):
    amount: int | None = Field(default=None, gt=0, le=10**15, description="minor units; all that is left if omitted")
    reason: str | None = Field(default=None, min_length=1, max_length=500)


class CheckoutIn(Body):
    return_url: str | None = Field(
        default=None,
        max_length=2000,
        pattern=r"^https?://",
        validation_alias=AliasChoices("returnUrl", "callbackUrl"),
        description="where the page sends the customer after paying; `callbackUrl` (NovaBilling's name) too",
    )


class CollectIn(Body):
    amount: int | None = Field(default=None, gt=0, le=10**15)
    payment_method_id: str | None = None


class PaymentMethodIn(Body):
    customer_id: str = Field(min_length=1, max_length=100)
    provider: str = "sandbox"
    type: str = Field(default="card", pattern=r"^(card|mobile_money)$")
    number: str | None = Field(default=None, max_length=40, description="a sandbox test instrument")
    token: str | None = Field(default=None, max_length=500, description="a provider's reusable method token")
    label: str | None = Field(default=None, max_length=100)


class ProviderAccountIn(Body):
    provider: str = Field(validation_alias=AliasChoices("provider", "providerName"))
    is_active: bool = True
    currencies: list[str] = Field(default_factory=list, max_length=50)
    priority: int = Field(default=100, ge=0, le=10_000)
    credentials: dict[str, str] = Field(default_factory=dict)


class ProviderAccountPatch(Body):
    """What PATCH changes; `credentials` replaces all of them (they are never shown back)."""

    currencies: list[str] | None = Field(default=None, max_length=50)
    priority: int | None = Field(default=None, ge=0, le=10_000)
    is_active: bool | None = None
    credentials: dict[str, str] | None = None
