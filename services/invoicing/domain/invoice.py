"""The invoice aggregate: pure decide/evolve functions, no I/O and no clock.

decide(state, command) -> events; evolve(state, event) -> state. The application layer loads a
stream, folds it with evolve, asks decide, and appends what it returns.
"""

from dataclasses import dataclass, field, replace
from datetime import date

from shared.errors import ApiError, Conflict

from .events import InvoiceCreated, LineItem


@dataclass(frozen=True)
class ItemInput:
    description: str
    quantity: int
    unit_amount: int


@dataclass(frozen=True)
class CreateDraft:
    invoice_id: str
    customer_id: str
    currency: str
    due_date: date
    items: tuple[ItemInput, ...]
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Invoice:
    """What the invoice is now, folded from its events."""

    id: str | None = None
    version: int = 0
    status: str | None = None
    customer_id: str | None = None
    currency: str | None = None
    due_date: date | None = None
    items: tuple[LineItem, ...] = ()
    subtotal: int = 0
    total: int = 0
    amount_paid: int = 0
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def amount_due(self) -> int:
        return self.total - self.amount_paid


def line_amount(item: ItemInput) -> int:
    return item.quantity * item.unit_amount


def decide_create(state: Invoice, cmd: CreateDraft) -> list[InvoiceCreated]:
    if state.version:
        raise Conflict("invoice_exists", f"Invoice {cmd.invoice_id} already exists.")
    if not cmd.items:
        raise ApiError("items_required", "An invoice needs at least one item.", field="items")
    for i, item in enumerate(cmd.items):
        if item.quantity <= 0:
            raise ApiError("quantity_invalid", "Quantity must be a positive whole number.", field=f"items.{i}.quantity")
        if item.unit_amount < 0:
            raise ApiError("amount_invalid", "unitAmount must not be negative.", field=f"items.{i}.unitAmount")
    items = [
        LineItem(description=i.description, quantity=i.quantity, unit_amount=i.unit_amount, amount=line_amount(i))
        for i in cmd.items
    ]
    subtotal = sum(i.amount for i in items)
    return [
        InvoiceCreated(
            invoice_id=cmd.invoice_id, customer_id=cmd.customer_id, currency=cmd.currency,
            due_date=cmd.due_date, items=items, subtotal=subtotal, total=subtotal,
            amount_due=subtotal, metadata=cmd.metadata,
        )
    ]


def evolve(state: Invoice, event_type: str, data: object) -> Invoice:
    if isinstance(data, InvoiceCreated):
        return replace(
            state, id=data.invoice_id, version=state.version + 1, status=data.status,
            customer_id=data.customer_id, currency=data.currency, due_date=data.due_date,
            items=tuple(data.items), subtotal=data.subtotal, total=data.total, metadata=data.metadata,
        )
    return replace(state, version=state.version + 1)  # types this code does not fold yet


def fold(events: list[tuple[str, object]]) -> Invoice:
    state = Invoice()
    for event_type, data in events:
        state = evolve(state, event_type, data)
    return state
