"""The documented bounds of what the API accepts, checked once at the edge so that no value that
passed can fail later in a database column, a timer or a date sum (docs/invoicing.md, "Limits").

Amounts are at most MAX_AMOUNT minor units: every total, line and payment fits int64 with a
factor of more than 9,000 to spare, so sums over many invoices fit as well. Dates lie within
MIN_DATE..MAX_DATE, so a due date plus any grace period or retry ladder stays a valid date.
"""

from datetime import date

from shared.errors import Refused

MAX_AMOUNT = 999_999_999_999_999  # minor units: under 10^15
MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(2099, 12, 31)
MAX_PAGE = 100_000  # list pages; deeper, a cursor pages cheaper and no offset can overflow


def check_amount(value: int, field: str) -> int:
    if abs(value) > MAX_AMOUNT:
        raise Refused(
            "amount_too_large", f"{field} is at most {MAX_AMOUNT:,} in the currency's minor unit.", field=field
        )
    return value


def check_date(value: date, field: str) -> date:
    if not MIN_DATE <= value <= MAX_DATE:
        raise Refused("date_out_of_range", f"{field} must lie between {MIN_DATE} and {MAX_DATE}.", field=field)
    return value


def bounded_int(raw: str) -> int:
    """A query-string whole number within the amount bounds (ValueError otherwise)."""
    value = int(raw)
    if abs(value) > MAX_AMOUNT:
        raise ValueError(f"at most {MAX_AMOUNT}")
    return value


def bounded_date(raw: str) -> date:
    """A query-string ISO date within the date bounds (ValueError otherwise)."""
    value = date.fromisoformat(raw)
    if not MIN_DATE <= value <= MAX_DATE:
        raise ValueError(f"must lie between {MIN_DATE} and {MAX_DATE}")
    return value
