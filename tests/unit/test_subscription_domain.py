"""The subscription aggregate: periods that keep their day, proration that adds up to what the
days say, and every transition or refusal."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.invoicing.domain import subscription as sb
from shared.errors import Conflict

T0 = datetime(2027, 1, 31, 9, tzinfo=UTC)
PRO = sb.Terms(
    plan_id="plan_pro", plan_name="Pro", price_id="price_pro", amount=3000, interval="month", interval_count=1
)
BASIC = sb.Terms(
    plan_id="plan_b", plan_name="Basic", price_id="price_b", amount=1000, interval="month", interval_count=1
)


def apply(state: sb.Subscription, facts: list[sb.Fact], at: datetime = T0) -> sb.Subscription:
    for event_type, fact in facts:
        state = sb.evolve(state, event_type, fact, subject="sub_1", at=at)
    return state


def active(terms: sb.Terms = BASIC, trial_days: int = 0) -> sb.Subscription:
    s = sb.Subscription(id="sub_1")
    facts = sb.decide_create(
        s,
        customer_id="cust_1",
        currency="USD",
        quantity=1,
        terms=terms,
        start=T0,
        trial_days=trial_days,
        metadata=None,
        invoice_id="inv_1",
    )
    return apply(s, facts)


def test_months_land_on_the_day_they_began_or_the_months_last():
    ends, t = [], T0
    for _ in range(4):
        t = sb.add_interval(t, "month", 1, 31)
        ends.append(t.date().isoformat())
    assert ends == ["2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31"]
    assert sb.add_interval(datetime(2028, 2, 29, tzinfo=UTC), "year", 1, 29).date().isoformat() == "2029-02-28"
    assert sb.add_interval(T0, "week", 2, 31) == T0 + timedelta(weeks=2)


def test_a_trial_then_a_renewal_then_an_end_at_the_period_end():
    s = active(trial_days=14)
    assert (s.status, s.period, s.period_end) == ("TRIALING", 0, T0 + timedelta(days=14))
    assert sb.decide_trial_ending(s, due=s.trial_end - timedelta(days=3))[0][0] == "subscription.trial_ending"
    assert sb.decide_trial_ending(s, due=s.trial_end - timedelta(days=2)) == []  # a stale timer
    s = apply(s, sb.decide_period_end(s, due=s.period_end, terms=BASIC, invoice_id="inv_2"))
    assert (s.status, s.period, s.latest_invoice_id) == ("ACTIVE", 1, "inv_2")
    assert sb.decide_period_end(s, due=T0 + timedelta(days=14), terms=BASIC, invoice_id="inv_3") == []  # fired twice
    s = apply(s, sb.decide_cancel(s, at_period_end=True, reason=None))
    assert (s.status, s.cancel_at_period_end) == ("ACTIVE", True)
    facts = sb.decide_period_end(s, due=s.period_end, terms=None, invoice_id=None)
    assert [t for t, _ in facts] == ["subscription.ended"] and apply(s, facts).status == "ENDED"


def test_pause_resume_cancel_and_their_refusals():
    s = active()
    s = apply(s, sb.decide_pause(s))
    assert s.status == "PAUSED" and sb.decide_period_end(s, due=s.period_end, terms=BASIC, invoice_id="x") == []
    with pytest.raises(Conflict) as err:
        sb.decide_pause(s)
    assert err.value.code == "subscription_paused"
    s = apply(s, sb.decide_resume(s, at=T0 + timedelta(days=40), terms=BASIC, invoice_id="inv_2"))
    assert (s.status, s.period, s.period_start) == ("ACTIVE", 2, T0 + timedelta(days=40))
    assert s.anchor_day == (T0 + timedelta(days=40)).day  # periods now end on the day it resumed
    s = apply(s, sb.decide_cancel(s, at_period_end=False, reason="fraud"))
    assert s.status == "CANCELED"
    with pytest.raises(Conflict) as err:
        sb.decide_cancel(s, at_period_end=False, reason=None)
    assert err.value.code == "subscription_canceled"
    with pytest.raises(Conflict):
        sb.decide_resume(s, at=T0, terms=BASIC, invoice_id="inv_3")


def test_a_change_at_period_end_bills_the_next_period_on_the_new_plan():
    s = active()
    s = apply(s, sb.decide_change_plan(s, at=T0, terms=PRO, at_period_end=True, prorate_now=True))
    assert (s.plan_id, s.next_plan.plan_id) == ("plan_b", "plan_pro")
    facts = sb.decide_period_end(s, due=s.period_end, terms=PRO, invoice_id="inv_2")
    assert [t for t, _ in facts] == ["subscription.changed", "subscription.renewed"]
    s = apply(s, facts)
    assert (s.plan_id, s.amount, s.next_plan) == ("plan_pro", 3000, None)
    with pytest.raises(Conflict) as err:
        sb.decide_change_plan(s, at=T0, terms=PRO, at_period_end=False, prorate_now=True)
    assert err.value.code == "plan_unchanged"


def test_past_due_follows_the_latest_invoice_only():
    s = active()
    assert sb.decide_payment_state(s, invoice_id="inv_old", failed=True) == []
    s = apply(s, sb.decide_payment_state(s, invoice_id="inv_1", failed=True))
    assert s.status == "PAST_DUE"
    assert sb.decide_payment_state(s, invoice_id="inv_1", failed=True) == []  # redelivered
    assert apply(s, sb.decide_payment_state(s, invoice_id="inv_1", failed=False)).status == "ACTIVE"


@given(
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(1, 5),
    st.integers(0, 40),
    st.sampled_from(["month", "year", "week"]),
)
def test_proration_adds_up_to_what_the_days_say(old_amount, new_amount, quantity, day, interval):
    """Changed `day` days into the period: the credit is the old price's share of the days left,
    the charge the new price's, each within half a unit of the exact share; what the customer
    pays for the period is the used days on the old plan plus the left days on the new."""
    start = T0
    end = sb.add_interval(start, interval, 1, start.day)
    at = min(start + timedelta(days=day), end)
    total, left = (end.date() - start.date()).days, (end.date() - at.date()).days
    old = sb.Terms("plan_a", "A", "price_a", old_amount, interval, 1)
    new = sb.Terms("plan_b", "B", "price_b", new_amount, interval, 1)
    s = sb.Subscription(id="sub_1")
    s = apply(
        s,
        sb.decide_create(
            s,
            customer_id="c",
            currency="USD",
            quantity=quantity,
            terms=old,
            start=start,
            trial_days=0,
            metadata=None,
            invoice_id="inv_1",
        ),
    )
    if new_amount == old_amount:
        new = sb.Terms("plan_b", "B", "price_b2", new_amount, interval, 1)
    [(_, changed)] = sb.decide_change_plan(s, at=at, terms=new, at_period_end=False, prorate_now=True)
    assert abs(changed.credit * total - old_amount * quantity * left) * 2 <= total
    assert abs(changed.charge * total - new_amount * quantity * left) * 2 <= total
    assert 0 <= changed.credit <= old_amount * quantity and 0 <= changed.charge <= new_amount * quantity
    paid = old_amount * quantity - changed.credit + changed.charge
    exact = (old_amount * quantity * (total - left) + new_amount * quantity * left) / total
    assert abs(paid - exact) <= 1
