"""Invoicing's event contracts: the data models of the events it publishes, at their current
versions. Field names are camelCase, as on the public API."""

from datetime import date

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.registry import EventRegistry

STREAM_TOPICS = {"invoice": "billing.invoices", "tenant": "billing.tenants"}


class Contract(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def dump(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


class LineItem(Contract):
    description: str
    quantity: int
    unit_amount: int
    amount: int


class InvoiceCreated(Contract):
    invoice_id: str
    customer_id: str
    currency: str
    due_date: date
    items: list[LineItem]
    subtotal: int
    total: int
    amount_due: int
    status: str = "DRAFT"
    metadata: dict[str, str] = Field(default_factory=dict)


class TenantCreated(Contract):
    name: str


class ApiKeyCreated(Contract):
    key_id: str
    key_hash: str
    prefix: str
    mode: str


class ApiKeyRevoked(Contract):
    key_id: str


registry = EventRegistry()
registry.register("invoice.created", InvoiceCreated)
registry.register("tenant.created", TenantCreated)
registry.register("api_key.created", ApiKeyCreated)
registry.register("api_key.revoked", ApiKeyRevoked)
