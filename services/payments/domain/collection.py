"""How much of an invoice can be collected now: pure rules shared by checkout, the hosted page
and automatic collection."""

from dataclasses import dataclass

from shared.errors import Conflict, Refused

COLLECTABLE = ("PENDING", "PARTIALLY_PAID", "OVERDUE", "FAILED")
CLOSED = ("PAID", "VOID", "WRITTEN_OFF")  # nothing can be paid on these, ever (checkout refuses them)


@dataclass(frozen=True)
class Balance:
    """An invoice as payments sees it: the snapshot's amountDue, less what payments has taken or
    is taking that the snapshot does not count yet (in flight, or not yet acknowledged)."""

    status: str
    currency: str
    total: int
    amount_due: int
    unacknowledged: int
    allow_partial: bool

    @property
    def remaining(self) -> int:
        return max(self.amount_due - self.unacknowledged, 0)

    @property
    def paid(self) -> int:
        return self.total - self.remaining


def amount_to_collect(balance: Balance, requested: int | None) -> int:
    """The amount to charge: the remaining balance, or a part of it where partial payments are
    allowed. Raises with a stable code otherwise."""
    if balance.status not in COLLECTABLE:
        raise Conflict("invoice_not_payable", f"An invoice in status {balance.status} cannot be paid.")
    if balance.remaining <= 0:
        raise Conflict("invoice_already_paid", "Nothing is left to pay on this invoice.")
    if requested is None:
        return balance.remaining
    if requested <= 0:
        raise Refused("amount_invalid", "The amount must be a positive integer in minor units.", field="amount")
    if requested > balance.remaining:
        raise Refused(
            "amount_exceeds_balance", f"At most {balance.remaining} is left to pay on this invoice.", field="amount"
        )
    if requested < balance.remaining and not balance.allow_partial:
        raise Refused("partial_payment_not_allowed", "This invoice must be paid in full.", field="amount")
    return requested
