"""Amounts as people type them on the hosted page. Minor units are integers; the conversion goes
through Decimal, never float. Exponents are ISO 4217's (shared.money, which also formats them)."""

from decimal import Decimal, InvalidOperation

from shared.limits import MAX_AMOUNT
from shared.money import exponent


def to_minor(text: str, currency: str) -> int:
    """'1,250.50' USD -> 125050; refuses more decimals than the currency has."""
    try:
        value = Decimal(text.replace(",", "").replace(" ", "").strip())
    except InvalidOperation as exc:
        raise ValueError("not a number") from exc
    if not value.is_finite():
        raise ValueError("not a number")
    if value.adjusted() > 18:  # decided on the exponent, before any huge integer is built
        raise ValueError("too large")
    minor = value.scaleb(exponent(currency))
    if minor != minor.to_integral_value():
        raise ValueError(f"{currency} has {exponent(currency)} decimal places")
    if abs(minor) > MAX_AMOUNT:
        raise ValueError("too large")
    return int(minor)


def to_major_text(amount: int, currency: str) -> str:
    """125050 USD -> '1250.50' (what the amount field shows)."""
    e = exponent(currency)
    return f"{Decimal(amount).scaleb(-e):.{e}f}"
