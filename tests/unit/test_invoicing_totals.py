"""The money rule, proved for arbitrary invoices (hypothesis) and pinned by worked examples."""

import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from services.invoicing.domain.totals import Discount, Line, price
from shared.money import allocate, format_money, percent_of, tax_included_in

rates = st.one_of(st.none(), st.decimals(min_value=0, max_value=100, places=2))
discounts = st.one_of(
    st.none(),
    st.builds(Discount, percent=st.decimals(min_value=0, max_value=100, places=2)),
    st.builds(Discount, amount=st.integers(min_value=0, max_value=10**9)),
)
lines = st.builds(
    Line,
    description=st.just("x"),
    quantity=st.integers(1, 10_000),
    unit_amount=st.integers(0, 10**9),
    tax_rate=rates,
    discount=discounts,
)


@given(st.lists(lines, min_size=1, max_size=20), rates, st.booleans(), discounts)
def test_totals_always_add_up(items, tax_rate, inclusive, discount):
    t = price(items, tax_rate=tax_rate, tax_inclusive=inclusive, discount=discount)
    assert t.subtotal == sum(p.amount for p in t.lines) == sum(i.quantity * i.unit_amount for i in items)
    assert t.discount_total == sum(p.discount for p in t.lines)
    assert t.tax_total == sum(p.tax for p in t.lines)
    assert t.total == t.subtotal - t.discount_total + (0 if inclusive else t.tax_total)
    for p in t.lines:
        assert 0 <= p.discount <= p.amount
        assert p.tax >= 0
        if inclusive:
            assert p.tax <= p.amount - p.discount  # the tax is inside what is charged
    assert t.total >= 0


def _half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))  # amounts here are never negative


def _percent(amount: int, rate: Decimal) -> int:
    return _half_up(Fraction(amount) * Fraction(rate) / 100)


def _off(discount: Discount | None, base: int) -> int:
    """A discount as the rule in services/invoicing/domain/totals.py writes it: capped at its base."""
    if discount is None:
        return 0
    return min(_percent(base, discount.percent) if discount.percent is not None else discount.amount or 0, base)


@given(st.lists(lines, min_size=1, max_size=20), rates, st.booleans(), discounts)
def test_totals_follow_the_written_rule(items, tax_rate, inclusive, discount):
    """Each number recomputed from the written rule with exact fractions, not with the product's
    own money helpers: line discounts, the invoice discount and its proportional split, the
    line's own tax rate or else the invoice's, exclusive or inclusive tax."""
    t = price(items, tax_rate=tax_rate, tax_inclusive=inclusive, discount=discount)
    gross = [i.quantity * i.unit_amount for i in items]
    own = [_off(i.discount, g) for i, g in zip(items, gross, strict=True)]
    nets = [g - d for g, d in zip(gross, own, strict=True)]
    invoice_discount = _off(discount, sum(nets))
    shares = [p.discount - d for p, d in zip(t.lines, own, strict=True)]
    assert sum(shares) == invoice_discount
    for p, item, g, net, share in zip(t.lines, items, gross, nets, shares, strict=True):
        assert p.amount == g and 0 <= share <= net
        if sum(nets):
            assert abs(share - Fraction(invoice_discount * net, sum(nets))) < 1  # its proportional part
        rate = item.tax_rate if item.tax_rate is not None else tax_rate
        assert p.tax_rate == rate
        taxable = net - share
        if not rate:
            assert p.tax == 0
        elif inclusive:
            assert p.tax == taxable - _half_up(Fraction(taxable) * 100 / (100 + Fraction(rate)))
        else:
            assert p.tax == _percent(taxable, rate)
    assert t.discount_total == sum(own) + invoice_discount
    assert t.total == sum(gross) - sum(own) - invoice_discount + (0 if inclusive else t.tax_total)


@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=30))
def test_allocation_is_exact_and_proportional(total, weights):
    parts = allocate(total, weights)
    if sum(weights) == 0:
        assert parts == [0] * len(weights)
        return
    assert sum(parts) == total
    for part, w in zip(parts, weights, strict=True):
        assert abs(part - total * w / sum(weights)) < 1  # never more than one minor unit off


def test_worked_examples_of_the_rounding_rule():
    assert percent_of(1005, Decimal("7.5")) == 75  # 75.375 rounds down
    assert percent_of(1010, Decimal("7.5")) == 76  # 75.75 rounds up
    assert percent_of(10, Decimal("5")) == 1  # 0.5 rounds half up
    assert tax_included_in(1180, Decimal("18")) == 180
    t = price(
        [Line("Pro", 2, 180000, Decimal("18")), Line("Setup", 1, 5000, None, Discount(percent=Decimal(10)))],
        discount=Discount(amount=1000),
    )
    # line discount 500; invoice discount 1000 split 988/12 by net (360000 : 4500)
    assert [p.discount for p in t.lines] == [988, 512]
    assert t.lines[0].tax == percent_of(360000 - 988, Decimal(18)) == 64622
    assert (t.subtotal, t.discount_total, t.tax_total, t.total) == (365000, 1500, 64622, 428122)


def test_money_is_formatted_for_its_currency():
    assert format_money(180000, "UGX") == "UGX180,000"  # no minor unit
    assert format_money(1250, "USD") == "$12.50"
    assert format_money(1250, "KWD") == "KWD1.250"  # three decimals
    assert format_money(1250, "NGN", locale="en_NG") == "₦12.50"
