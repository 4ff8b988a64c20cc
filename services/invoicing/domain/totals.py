"""Invoice arithmetic, pure and exact (integers in minor units; rates as Decimal percentages).

The rule, applied in this order:
1. line gross = quantity × unitAmount;
2. line discount: percent → rounded half up, or fixed (capped at the gross);
3. invoice discount on the sum of discounted lines (percent rounded half up, or fixed, capped),
   allocated to the lines in proportion to their net amounts, so that it adds up exactly;
4. tax per line on what remains, at the line's rate or else the invoice's: exclusive adds
   rate% rounded half up; inclusive takes out gross − round(gross ÷ (1 + rate%));
5. subtotal = Σ gross, discountTotal = Σ line discounts + invoice discount, taxTotal = Σ tax,
   total = subtotal − discountTotal (+ taxTotal when exclusive).
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shared.money import allocate, percent_of, tax_included_in


@dataclass(frozen=True)
class Discount:
    """Either a percentage (0-100) or a fixed amount in minor units."""

    percent: Decimal | None = None
    amount: int | None = None

    def of(self, base: int) -> int:
        if self.percent is not None:
            return min(percent_of(base, self.percent), base)
        return min(self.amount or 0, base)

    def dump(self) -> dict[str, Any]:
        return {"percent": str(self.percent)} if self.percent is not None else {"amount": self.amount}


@dataclass(frozen=True)
class Line:
    description: str
    quantity: int
    unit_amount: int
    tax_rate: Decimal | None = None
    discount: Discount | None = None


@dataclass(frozen=True)
class PricedLine:
    line: Line
    amount: int  # gross
    discount: int  # line discount + its share of the invoice discount
    tax: int
    tax_rate: Decimal | None


@dataclass(frozen=True)
class Totals:
    lines: tuple[PricedLine, ...]
    subtotal: int
    discount_total: int
    tax_total: int
    total: int


def price(
    lines: list[Line], *, tax_rate: Decimal | None = None, tax_inclusive: bool = False, discount: Discount | None = None
) -> Totals:
    gross = [ln.quantity * ln.unit_amount for ln in lines]
    line_discounts = [ln.discount.of(g) if ln.discount else 0 for ln, g in zip(lines, gross, strict=True)]
    nets = [g - d for g, d in zip(gross, line_discounts, strict=True)]
    invoice_discount = discount.of(sum(nets)) if discount else 0
    shares = allocate(invoice_discount, nets)
    priced = []
    for ln, g, ld, net, share in zip(lines, gross, line_discounts, nets, shares, strict=True):
        taxable = net - share
        rate = ln.tax_rate if ln.tax_rate is not None else tax_rate
        tax = 0
        if rate:
            tax = tax_included_in(taxable, rate) if tax_inclusive else percent_of(taxable, rate)
        priced.append(PricedLine(ln, g, ld + share, tax, rate))
    subtotal = sum(gross)
    discount_total = sum(p.discount for p in priced)
    tax_total = sum(p.tax for p in priced)
    total = subtotal - discount_total + (0 if tax_inclusive else tax_total)
    return Totals(tuple(priced), subtotal, discount_total, tax_total, total)
