"""The subscription aggregate: a customer on a plan, billed period after period. Pure
decide/evolve; times come in (the tenant's clock, or the moment a timer was due).

Periods are numbered: a trial is period 0, the first paid period is 1. Each paid period is billed
when it begins (the app issues its invoice in the same transaction). Status is derived:
ENDED (ran to the end of the period it was cancelled at), CANCELED (cancelled at once), PAUSED,
PAST_DUE (its latest invoice's collection failed), TRIALING (in period 0), else ACTIVE.
"""

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.errors import Conflict, Refused

from . import events as ev

Fact = tuple[str, ev.Contract]
TRIALING, ACTIVE, PAST_DUE, PAUSED, CANCELED, ENDED = "TRIALING", "ACTIVE", "PAST_DUE", "PAUSED", "CANCELED", "ENDED"
STATUSES = (TRIALING, ACTIVE, PAST_DUE, PAUSED, CANCELED, ENDED)
RUNNING = frozenset({TRIALING, ACTIVE, PAST_DUE})  # periods go on
TRIAL_ENDING_NOTICE = timedelta(days=3)  # subscription.trial_ending this long before the trial ends


@dataclass(frozen=True)
class Terms:
    """What a plan bills in one currency, as the plan is when a period begins."""

    plan_id: str
    plan_name: str
    price_id: str
    amount: int  # per period for one unit
    interval: str
    interval_count: int
    trial_days: int = 0


@dataclass(frozen=True)
class Subscription:
    id: str | None = None
    version: int = 0
    customer_id: str | None = None
    currency: str | None = None
    quantity: int = 1
    plan_id: str | None = None
    price_id: str | None = None
    amount: int = 0  # per unit, the current period's
    interval: str = "month"
    interval_count: int = 1
    anchor_day: int = 1  # monthly and yearly periods end on this day of the month (or the month's last)
    trial_end: datetime | None = None
    period: int = 0
    period_start: datetime | None = None
    period_end: datetime | None = None
    cancel_at_period_end: bool = False
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    paused_at: datetime | None = None
    past_due: bool = False
    next_plan: ev.PlanChoice | None = None  # a change at the period's end
    latest_invoice_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def status(self) -> str:
        if self.ended_at:
            return ENDED
        if self.canceled_at:
            return CANCELED
        if self.paused_at:
            return PAUSED
        if self.past_due:
            return PAST_DUE
        if self.period == 0:
            return TRIALING
        return ACTIVE


# -- periods ------------------------------------------------------------------------------------


def add_interval(moment: datetime, interval: str, count: int, anchor_day: int) -> datetime:
    """`moment` plus `count` intervals; months and years land on `anchor_day` (the month's last
    day when it is shorter), so a subscription begun on the 31st renews on each month's last day
    and returns to the 31st when there is one."""
    if interval == "day":
        return moment + timedelta(days=count)
    if interval == "week":
        return moment + timedelta(weeks=count)
    months = count * (12 if interval == "year" else 1)
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def prorate(amount: int, start: datetime, end: datetime, at: datetime) -> int:
    """The part of `amount` (a whole period's, start to end) that the days from `at` to the end
    are worth, rounded half up: days count by calendar date."""
    total = (end.date() - start.date()).days
    left = min(max((end.date() - at.date()).days, 0), total)
    if total <= 0:
        return 0
    return (2 * amount * left + total) // (2 * total)


# -- decisions ----------------------------------------------------------------------------------


def _running(state: Subscription, action: str) -> None:
    if state.status not in RUNNING:
        raise Conflict(
            f"subscription_{state.status.lower()}",
            f"Cannot {action} a subscription that is {state.status}.",
            field="status",
        )


def decide_create(
    state: Subscription,
    *,
    customer_id: str,
    currency: str,
    quantity: int,
    terms: Terms,
    start: datetime,
    trial_days: int | None,
    metadata: dict[str, str] | None,
    invoice_id: str | None,
) -> list[Fact]:
    """A trial (period 0) when there are trial days, else period 1 begins, billed on `invoice_id`."""
    if state.version:
        raise Conflict("subscription_exists", "This subscription already exists.")
    if quantity < 1:
        raise Refused("quantity_invalid", "quantity must be at least 1.", field="quantity")
    trial = terms.trial_days if trial_days is None else trial_days
    trial_end = start + timedelta(days=trial) if trial else None
    if trial_end is None and invoice_id is None:
        raise ValueError("the first paid period needs an invoice")
    end = trial_end or add_interval(start, terms.interval, terms.interval_count, start.day)
    return [
        (
            "subscription.created",
            ev.SubscriptionCreated(
                customer_id=customer_id,
                currency=currency,
                quantity=quantity,
                plan=ev.PlanChoice(plan_id=terms.plan_id, price_id=terms.price_id),
                amount=terms.amount,
                interval=terms.interval,
                interval_count=terms.interval_count,
                anchor_day=(trial_end or start).day,  # paid periods renew on the day the first began
                start=start,
                trial_end=trial_end,
                period=0 if trial_end else 1,
                period_end=end,
                invoice_id=None if trial_end else invoice_id,
                metadata=metadata or {},
            ),
        )
    ]


def decide_period_end(state: Subscription, *, due: datetime, terms: Terms | None, invoice_id: str | None) -> list[Fact]:
    """The period that ends at `due` is over: end the subscription if it was cancelled at the
    period's end, else begin the next period on `terms` (the plan as it is now, or the plan a
    change at period end chose), billed on `invoice_id`. Nothing for a stale or repeated timer."""
    if state.status not in RUNNING or state.period_end != due:
        return []
    if state.cancel_at_period_end:
        return [("subscription.ended", ev.SubscriptionEnded())]
    if terms is None or invoice_id is None:
        raise ValueError("the next period needs its terms and an invoice")
    facts: list[Fact] = []
    if state.next_plan and state.next_plan.plan_id != state.plan_id:
        facts.append(("subscription.changed", _changed(state, terms, effective="period_end")))
    end = add_interval(due, terms.interval, terms.interval_count, state.anchor_day)
    renewed = ev.SubscriptionRenewed(
        period=state.period + 1,
        period_start=due,
        period_end=end,
        plan=ev.PlanChoice(plan_id=terms.plan_id, price_id=terms.price_id),
        amount=terms.amount,
        interval=terms.interval,
        interval_count=terms.interval_count,
        invoice_id=invoice_id,
    )
    return [*facts, ("subscription.renewed", renewed)]


def _changed(state: Subscription, terms: Terms, *, effective: str, credit: int = 0, charge: int = 0) -> ev.PlanChanged:
    return ev.PlanChanged(
        from_plan=ev.PlanChoice(plan_id=state.plan_id or "", price_id=state.price_id or ""),
        plan=ev.PlanChoice(plan_id=terms.plan_id, price_id=terms.price_id),
        effective=effective,
        amount=terms.amount,
        credit=credit,
        charge=charge,
    )


def decide_change_plan(
    state: Subscription, *, at: datetime, terms: Terms, at_period_end: bool, prorate_now: bool
) -> list[Fact]:
    """Now: the rest of this period is on the new plan (when prorating, `credit` for the unused
    part of the old price goes to the customer and `charge` for the rest of the period on the new
    one is billed: the caller sets the invoice); at period end: the next period begins on it."""
    _running(state, "change the plan of")
    if terms.plan_id == state.plan_id and terms.price_id == state.price_id:
        raise Conflict("plan_unchanged", "The subscription is already on this plan.", field="planId")
    if at_period_end:
        return [("subscription.changed", _changed(state, terms, effective="period_end"))]
    if state.status == TRIALING or not prorate_now:
        return [("subscription.changed", _changed(state, terms, effective="now"))]
    assert state.period_start and state.period_end
    credit = prorate(state.amount * state.quantity, state.period_start, state.period_end, at)
    charge = prorate(terms.amount * state.quantity, state.period_start, state.period_end, at)
    return [("subscription.changed", _changed(state, terms, effective="now", credit=credit, charge=charge))]


def decide_cancel(state: Subscription, *, at_period_end: bool, reason: str | None) -> list[Fact]:
    if state.status in (CANCELED, ENDED):
        raise Conflict(f"subscription_{state.status.lower()}", f"The subscription is already {state.status}.")
    if at_period_end:
        if state.status not in RUNNING:
            raise Conflict(
                f"subscription_{state.status.lower()}", "Only a running subscription can end with its period."
            )
        if state.cancel_at_period_end:
            return []
    return [("subscription.canceled", ev.SubscriptionCanceled(at_period_end=at_period_end, reason=reason))]


def decide_pause(state: Subscription) -> list[Fact]:
    if state.status not in (ACTIVE, PAST_DUE):
        raise Conflict(f"subscription_{state.status.lower()}", "Only an active subscription can be paused.")
    return [("subscription.paused", ev.SubscriptionPaused())]


def check_resumable(state: Subscription) -> None:
    if state.status != PAUSED:
        raise Conflict(f"subscription_{state.status.lower()}", "Only a paused subscription can be resumed.")


def decide_resume(state: Subscription, *, at: datetime, terms: Terms, invoice_id: str) -> list[Fact]:
    """A new period begins at `at`, on the plan as it is now, billed on `invoice_id`."""
    check_resumable(state)
    end = add_interval(at, terms.interval, terms.interval_count, at.day)
    return [
        (
            "subscription.resumed",
            ev.SubscriptionResumed(
                period=state.period + 1,
                period_start=at,
                period_end=end,
                plan=ev.PlanChoice(plan_id=terms.plan_id, price_id=terms.price_id),
                amount=terms.amount,
                interval=terms.interval,
                interval_count=terms.interval_count,
                invoice_id=invoice_id,
            ),
        )
    ]


def decide_trial_ending(state: Subscription, *, due: datetime) -> list[Fact]:
    """subscription.trial_ending, TRIAL_ENDING_NOTICE before the trial ends (if it still will)."""
    if state.status != TRIALING or state.trial_end is None or state.trial_end - TRIAL_ENDING_NOTICE != due:
        return []
    return [("subscription.trial_ending", ev.TrialEnding(trial_end=state.trial_end))]


def decide_payment_state(state: Subscription, *, invoice_id: str, failed: bool) -> list[Fact]:
    """What its latest invoice's collection says: failed makes it PAST_DUE, paid makes it whole."""
    if state.status not in RUNNING or invoice_id != state.latest_invoice_id or failed == state.past_due:
        return []
    if failed:
        return [("subscription.past_due", ev.SubscriptionPastDue(invoice_id=invoice_id))]
    return [("subscription.recovered", ev.SubscriptionRecovered(invoice_id=invoice_id))]


# -- evolution ----------------------------------------------------------------------------------


def _period(s: Subscription, p: ev.SubscriptionRenewed) -> Subscription:
    return replace(
        s,
        period=p.period,
        period_start=p.period_start,
        period_end=p.period_end,
        plan_id=p.plan.plan_id,
        price_id=p.plan.price_id,
        amount=p.amount,
        interval=p.interval,
        interval_count=p.interval_count,
        next_plan=None,
        latest_invoice_id=p.invoice_id,
        past_due=False,
    )


def evolve(state: Subscription, event_type: str, fact: ev.Contract, *, subject: str, at: datetime) -> Subscription:
    s = replace(state, id=subject, version=state.version + 1, updated_at=at)
    match event_type, fact:
        case "subscription.created", ev.SubscriptionCreated() as c:
            return replace(
                s,
                customer_id=c.customer_id,
                currency=c.currency,
                quantity=c.quantity,
                plan_id=c.plan.plan_id,
                price_id=c.plan.price_id,
                amount=c.amount,
                interval=c.interval,
                interval_count=c.interval_count,
                anchor_day=c.anchor_day,
                trial_end=c.trial_end,
                period=c.period,
                period_start=c.start,
                period_end=c.period_end,
                latest_invoice_id=c.invoice_id,
                metadata=c.metadata,
                created_at=at,
            )
        case "subscription.resumed", ev.SubscriptionResumed() as p:  # periods now end on the resuming day
            return replace(_period(s, p), paused_at=None, anchor_day=p.period_start.day)
        case "subscription.renewed", ev.SubscriptionRenewed() as p:
            return _period(s, p)
        case "subscription.changed", ev.PlanChanged(effective="period_end", plan=choice):
            return replace(s, next_plan=choice)
        case "subscription.changed", ev.PlanChanged(plan=choice, amount=a, invoice_id=invoice_id):
            return replace(
                s,
                plan_id=choice.plan_id,
                price_id=choice.price_id,
                amount=a,
                next_plan=None,
                latest_invoice_id=invoice_id or s.latest_invoice_id,
            )
        case "subscription.canceled", ev.SubscriptionCanceled(at_period_end=True):
            return replace(s, cancel_at_period_end=True)
        case "subscription.canceled", _:
            return replace(s, canceled_at=at)
        case "subscription.ended", _:
            return replace(s, ended_at=at)
        case "subscription.paused", _:
            return replace(s, paused_at=at)
        case "subscription.past_due", _:
            return replace(s, past_due=True)
        case "subscription.recovered", _:
            return replace(s, past_due=False)
    return s


def fold(history: Sequence[tuple[str, ev.Contract, datetime]], subject: str) -> Subscription:
    state = Subscription(id=subject)
    for event_type, fact, at in history:
        state = evolve(state, event_type, fact, subject=subject, at=at)
    return state
