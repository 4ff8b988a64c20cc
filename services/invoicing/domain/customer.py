"""The customer aggregate: profile fields and a credit balance per currency (excess payments
and credits), applied automatically to the customer's next invoices. Pure decide/evolve."""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from shared.errors import Conflict, Refused

from . import events as ev

Fact = tuple[str, ev.Contract]


@dataclass(frozen=True)
class Customer:
    id: str | None = None
    version: int = 0
    fields: ev.CustomerFields = field(default_factory=ev.CustomerFields)
    credit: dict[str, int] = field(default_factory=dict)  # currency -> balance in minor units
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False

    @property
    def exists(self) -> bool:
        return self.version > 0


def _check(f: ev.CustomerFields) -> None:
    if f.name is not None and not f.name.strip():
        raise Refused("name_required", "A customer needs a name.", field="name")
    if f.net_term_days is not None and not 0 <= f.net_term_days <= 365:
        raise Refused("net_term_days_invalid", "netTermDays must be between 0 and 365.", field="netTermDays")


def decide_create(state: Customer, fields: ev.CustomerFields) -> list[Fact]:
    if state.exists:
        raise Conflict("customer_exists", "This customer already exists.")
    if not fields.name:
        raise Refused("name_required", "A customer needs a name.", field="name")
    _check(fields)
    return [("customer.created", ev.CustomerCreated(fields=fields))]


def decide_update(state: Customer, changes: ev.CustomerFields) -> list[Fact]:
    changed = sorted(changes.model_fields_set)
    if not changed:
        return []
    _check(changes)
    names = [ev.CustomerFields.model_fields[k].alias or k for k in changed]
    return [("customer.updated", ev.CustomerUpdated(changes=names, fields=changes))]


def decide_delete(state: Customer, unsettled: int, subscriptions: int = 0) -> list[Fact]:
    """`unsettled`: the customer's invoices still in draft or with money due. A customer with any
    cannot go (its invoices would name someone who no longer exists), nor one with running
    `subscriptions` (they would bill no one), nor one with credit: the money is the customer's
    and would vanish with them."""
    if subscriptions:
        raise Conflict(
            "customer_has_subscriptions",
            f"This customer has {subscriptions} running subscription(s); cancel them first.",
        )
    if unsettled:
        raise Conflict(
            "customer_has_open_invoices",
            f"This customer has {unsettled} draft or unpaid invoice(s); void, delete or settle them first.",
        )
    if credit := {c: a for c, a in state.credit.items() if a}:
        held = ", ".join(f"{a} {c}" for c, a in sorted(credit.items()))
        raise Conflict("customer_has_credit", f"This customer holds credit ({held}, minor units); use it first.")
    return [("customer.deleted", ev.CustomerDeleted())]


def decide_add_credit(
    state: Customer, amount: int, currency: str, *, invoice_id: str | None, reason: str
) -> list[Fact]:
    if amount <= 0:
        return []
    return [
        (
            "customer.credit_added",
            ev.CreditAdded(amount=amount, currency=currency, invoice_id=invoice_id, reason=reason),
        )
    ]


def decide_apply_credit(state: Customer, amount: int, currency: str, invoice_id: str) -> list[Fact]:
    if amount <= 0:
        return []
    if amount > state.credit.get(currency, 0):
        raise ValueError("cannot apply more credit than the balance")
    return [("customer.credit_applied", ev.CreditApplied(amount=amount, currency=currency, invoice_id=invoice_id))]


def evolve(state: Customer, event_type: str, fact: ev.Contract, *, subject: str, at: datetime) -> Customer:
    s = replace(state, id=subject, version=state.version + 1, updated_at=at)
    match event_type, fact:
        case "customer.created", ev.CustomerCreated(fields=f):
            return replace(s, fields=f, created_at=at)
        case "customer.updated", ev.CustomerUpdated(changes=changed, fields=f):
            names = ev.field_names(ev.CustomerFields, changed)
            return replace(s, fields=s.fields.model_copy(update={k: getattr(f, k) for k in names}))
        case "customer.credit_added", ev.CreditAdded(amount=a, currency=c):
            return replace(s, credit={**s.credit, c: s.credit.get(c, 0) + a})
        case "customer.credit_applied", ev.CreditApplied(amount=a, currency=c):
            return replace(s, credit={**s.credit, c: s.credit.get(c, 0) - a})
        case "customer.deleted", _:
            return replace(s, deleted=True)
    return s


def fold(history: Sequence[tuple[str, ev.Contract, datetime]], subject: str) -> Customer:
    state = Customer(id=subject)
    for event_type, fact, at in history:
        state = evolve(state, event_type, fact, subject=subject, at=at)
    return state
