"""The plan aggregate: prices per currency, versioned, and kept for subscriptions once removed."""

from datetime import UTC, datetime

import pytest

from services.invoicing.domain import events as ev
from services.invoicing.domain import plan as pl
from shared.errors import Conflict, NotFound, Refused

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def apply(state: pl.Plan, facts: list[pl.Fact]) -> pl.Plan:
    for event_type, fact in facts:
        state = pl.evolve(state, event_type, fact, subject="plan_1", at=T0)
    return state


def created(*prices: tuple[str, int]) -> pl.Plan:
    fields = ev.PlanFields(code="pro", name="Pro", interval="month", interval_count=1)
    priced = [ev.PriceData(price_id=f"price_{c}", currency=c, amount=a) for c, a in prices]
    s = pl.Plan(id="plan_1")
    return apply(s, pl.decide_create(s, fields, priced))


def test_a_price_change_is_a_new_version_and_a_removed_price_is_kept_for_subscriptions():
    s = created(("USD", 1000), ("KES", 90000))
    assert s.price_in("USD").amount == 1000 and s.price_in("EUR") is None
    s = apply(s, pl.decide_change_price(s, "price_USD", 1200))
    assert (s.price_in("USD").amount, s.price_in("USD").version) == (1200, 2)
    assert pl.decide_change_price(s, "price_USD", 1200) == []  # the same amount is no new version
    s = apply(s, pl.decide_remove_price(s, "price_USD"))
    assert s.price_in("USD") is None and s.prices["price_USD"].amount == 1200  # still there to renew at
    with pytest.raises(NotFound):
        pl.decide_change_price(s, "price_USD", 1)
    s = apply(s, pl.decide_add_price(s, ev.PriceData(price_id="price_USD2", currency="USD", amount=1300)))
    assert s.price_in("USD").id == "price_USD2"


def test_one_price_per_currency_and_sane_periods():
    with pytest.raises(Conflict) as err:
        created(("USD", 1000), ("USD", 2000))
    assert err.value.code == "price_exists"
    s = created()
    with pytest.raises(Refused) as err:
        pl.decide_update(s, ev.PlanFields(interval="day", interval_count=400))
    assert err.value.field == "intervalCount"
    with pytest.raises(Refused) as err:
        pl.decide_update(s, ev.PlanFields(interval_count=13))  # on the monthly plan it is
    assert err.value.field == "intervalCount"
    assert apply(s, pl.decide_update(s, ev.PlanFields(interval="week", interval_count=2))).fields.interval == "week"


def test_a_plan_with_running_subscriptions_is_not_deleted():
    s = created(("USD", 1000))
    with pytest.raises(Conflict) as err:
        pl.decide_delete(s, subscriptions=2)
    assert err.value.code == "plan_has_subscriptions"
    assert not apply(s, pl.decide_delete(s, subscriptions=0)).exists
