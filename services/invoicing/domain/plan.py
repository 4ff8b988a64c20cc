"""The plan aggregate: what a subscription bills each period, with one price per currency.
Pure decide/evolve.

Prices are versioned: a change is a new version of the price (plan.price_changed), billed from
the next period that begins after it; invoices already issued are their own streams and never
change. A removed price bills nothing new but stays in the state, so subscriptions already on
it keep renewing at its last amount.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from shared.errors import Conflict, NotFound, Refused
from shared.limits import check_amount

from . import events as ev

Fact = tuple[str, ev.Contract]
INTERVALS = ("day", "week", "month", "year")
MAX_INTERVAL_COUNT = {"day": 365, "week": 52, "month": 12, "year": 3}  # at most about three years a period
MAX_TRIAL_DAYS = 730


@dataclass(frozen=True)
class Price:
    id: str
    currency: str
    amount: int
    version: int = 1
    removed: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Plan:
    id: str | None = None
    version: int = 0
    fields: ev.PlanFields = field(default_factory=ev.PlanFields)
    prices: dict[str, Price] = field(default_factory=dict)  # by price id, removed ones too
    deleted: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.version > 0 and not self.deleted

    @property
    def active(self) -> bool:
        return self.exists and self.fields.is_active is not False

    def price_in(self, currency: str) -> Price | None:
        """The plan's current price in `currency`, None if it has none."""
        return next((p for p in self.prices.values() if p.currency == currency and not p.removed), None)


def _check(f: ev.PlanFields, *, interval: str | None, interval_count: int | None) -> None:
    if f.name is not None and not f.name.strip():
        raise Refused("name_required", "A plan needs a name.", field="name")
    if interval is not None and interval not in INTERVALS:
        raise Refused("interval_invalid", f"interval is one of {', '.join(INTERVALS)}.", field="interval")
    if interval is not None and interval_count is not None and not 1 <= interval_count <= MAX_INTERVAL_COUNT[interval]:
        raise Refused(
            "interval_count_invalid",
            f"intervalCount is 1-{MAX_INTERVAL_COUNT[interval]} for a {interval}ly plan.",
            field="intervalCount",
        )
    if f.trial_days is not None and not 0 <= f.trial_days <= MAX_TRIAL_DAYS:
        raise Refused("trial_days_invalid", f"trialDays is 0-{MAX_TRIAL_DAYS}.", field="trialDays")


def _check_price(state: Plan, currency: str, amount: int, name: str) -> None:
    if amount < 0:
        raise Refused("amount_invalid", "amount must not be negative.", field=f"{name}.amount")
    check_amount(amount, f"{name}.amount")
    if state.price_in(currency):
        raise Conflict("price_exists", f"This plan already has a {currency} price; change its amount.", field=name)


def _require(state: Plan) -> None:
    if not state.exists:
        raise NotFound("plan", str(state.id))


def decide_create(state: Plan, fields: ev.PlanFields, prices: list[ev.PriceData]) -> list[Fact]:
    if state.version:
        raise Conflict("plan_exists", "This plan already exists.")
    if not fields.name:
        raise Refused("name_required", "A plan needs a name.", field="name")
    if not fields.code:
        raise Refused("code_required", "A plan needs a code.", field="code")
    _check(fields, interval=fields.interval, interval_count=fields.interval_count)
    seen = Plan(id=state.id)
    for i, p in enumerate(prices):
        _check_price(seen, p.currency, p.amount, f"prices.{i}")
        seen = replace(seen, prices={**seen.prices, p.price_id: Price(p.price_id, p.currency, p.amount)})
    return [("plan.created", ev.PlanCreated(fields=fields, prices=prices))]


def decide_update(state: Plan, changes: ev.PlanFields) -> list[Fact]:
    """Anything but the code; a new interval or trial applies to periods that begin later."""
    _require(state)
    changed = sorted(changes.model_fields_set)
    if "code" in changed and changes.code != state.fields.code:
        raise Refused("code_immutable", "A plan's code cannot change; create a new plan.", field="code")
    changed = [k for k in changed if k != "code"]
    if not changed:
        return []
    merged = state.fields.model_copy(update={k: getattr(changes, k) for k in changed})
    _check(changes, interval=merged.interval, interval_count=merged.interval_count)
    names = [ev.PlanFields.model_fields[k].alias or k for k in changed]
    kept = ev.PlanFields.model_validate({k: getattr(changes, k) for k in changed})
    return [("plan.updated", ev.PlanUpdated(changes=names, fields=kept))]


def decide_add_price(state: Plan, price: ev.PriceData) -> list[Fact]:
    _require(state)
    _check_price(state, price.currency, price.amount, "price")
    return [("plan.price_added", ev.PriceAdded(price=price))]


def _price(state: Plan, price_id: str) -> Price:
    _require(state)
    price = state.prices.get(price_id)
    if price is None or price.removed:
        raise NotFound("price", price_id)
    return price


def decide_change_price(state: Plan, price_id: str, amount: int) -> list[Fact]:
    price = _price(state, price_id)
    if amount < 0:
        raise Refused("amount_invalid", "amount must not be negative.", field="amount")
    check_amount(amount, "amount")
    if amount == price.amount:
        return []
    return [("plan.price_changed", ev.PriceChanged(price_id=price_id, amount=amount, previous_amount=price.amount))]


def decide_remove_price(state: Plan, price_id: str) -> list[Fact]:
    _price(state, price_id)
    return [("plan.price_removed", ev.PriceRemoved(price_id=price_id))]


def decide_delete(state: Plan, subscriptions: int) -> list[Fact]:
    """`subscriptions`: those still running on the plan, which need it to renew."""
    _require(state)
    if subscriptions:
        raise Conflict(
            "plan_has_subscriptions",
            f"{subscriptions} subscription(s) still run on this plan; deactivate it (isActive false) instead.",
        )
    return [("plan.deleted", ev.PlanDeleted())]


def evolve(state: Plan, event_type: str, fact: ev.Contract, *, subject: str, at: datetime) -> Plan:
    s = replace(state, id=subject, version=state.version + 1, updated_at=at)
    match event_type, fact:
        case "plan.created", ev.PlanCreated(fields=f, prices=prices):
            made = {p.price_id: Price(p.price_id, p.currency, p.amount, created_at=at, updated_at=at) for p in prices}
            return replace(s, fields=f, prices=made, created_at=at)
        case "plan.updated", ev.PlanUpdated(changes=changed, fields=f):
            names = ev.field_names(ev.PlanFields, changed)
            return replace(s, fields=s.fields.model_copy(update={k: getattr(f, k) for k in names}))
        case "plan.price_added", ev.PriceAdded(price=p):
            added = Price(p.price_id, p.currency, p.amount, created_at=at, updated_at=at)
            return replace(s, prices={**s.prices, p.price_id: added})
        case "plan.price_changed", ev.PriceChanged(price_id=pid, amount=a):
            old = s.prices[pid]
            return replace(s, prices={**s.prices, pid: replace(old, amount=a, version=old.version + 1, updated_at=at)})
        case "plan.price_removed", ev.PriceRemoved(price_id=pid):
            old = s.prices[pid]
            return replace(s, prices={**s.prices, pid: replace(old, removed=True, updated_at=at)})
        case "plan.deleted", _:
            return replace(s, deleted=True)
    return s


def fold(history: Sequence[tuple[str, ev.Contract, datetime]], subject: str) -> Plan:
    state = Plan(id=subject)
    for event_type, fact, at in history:
        state = evolve(state, event_type, fact, subject=subject, at=at)
    return state
