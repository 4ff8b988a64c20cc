"""Money: an integer amount in the currency's minor unit, with its ISO 4217 code. No floats.

The one rounding rule, used everywhere an amount is computed from a rate: round half up (away
from zero) to the minor unit, once per computed amount (per line for discounts and taxes).
Exponents come from CLDR through babel (UGX 0, NGN 2, USD 2, KWD 3).
"""

from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import format_currency, get_currency_precision, is_currency

HUNDRED = Decimal(100)


class UnsupportedCurrency(ValueError):
    pass


def check_currency(code: str) -> str:
    code = (code or "").upper()
    if len(code) != 3 or not is_currency(code):
        raise UnsupportedCurrency(f"'{code}' is not a supported ISO 4217 currency")
    return code


def exponent(currency: str) -> int:
    return get_currency_precision(check_currency(currency))


def round_half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def percent_of(amount: int, rate: Decimal) -> int:
    """rate% of amount, rounded by the rule."""
    return round_half_up(Decimal(amount) * rate / HUNDRED)


def tax_included_in(gross: int, rate: Decimal) -> int:
    """The tax contained in a tax-inclusive amount: gross - gross / (1 + rate%)."""
    return gross - round_half_up(Decimal(gross) * HUNDRED / (HUNDRED + rate))


def to_decimal(amount: int, currency: str) -> Decimal:
    return Decimal(amount).scaleb(-exponent(currency))


def format_money(amount: int, currency: str, locale: str = "en") -> str:
    """'USh1,800', '$12.50', 'KWD 1.250': formatted by CLDR rules for the locale."""
    return format_currency(to_decimal(amount, currency), currency, locale=locale)


def allocate(total: int, weights: list[int]) -> list[int]:
    """Split `total` in proportion to `weights` so the parts add up exactly (largest remainder)."""
    whole = sum(weights)
    if not weights:
        return []
    if whole == 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares
