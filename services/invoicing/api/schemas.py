"""Request and response bodies of the invoicing API (camelCase on the wire)."""

from datetime import date

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ItemIn(Body):
    description: str = Field(min_length=1, max_length=500)
    quantity: int = Field(default=1, gt=0, le=1_000_000_000)
    unit_amount: int = Field(ge=0, le=10**15, description="in the currency's minor unit")


class CreateInvoiceIn(Body):
    customer_id: str = Field(min_length=1, max_length=100)
    due_date: date
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    items: list[ItemIn] = Field(min_length=1, max_length=500)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=50)


class PageMeta(BaseModel):
    page: int
    limit: int
    total: int
    totalPages: int
