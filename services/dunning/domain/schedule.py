"""When things fall due for one invoice: pure functions over what dunning knows of the invoice.

Due dates are calendar dates in UTC: an invoice due on 2026-12-31 has passed its due date at
2027-01-01T00:00Z; the grace period moves the overdue moment later by whole days.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .policy import Policy

# Invoice statuses (docs/events.md) that still await money, and those that never will again.
OPEN_STATUSES = frozenset({"PENDING", "PARTIALLY_PAID", "OVERDUE", "FAILED"})
CLOSED_STATUSES = frozenset({"PAID", "VOID", "WRITTEN_OFF", "UNCOLLECTIBLE", "DELETED"})

OVERDUE, RETRY, REMINDER, OUTCOME = "overdue", "retry", "reminder", "outcome"
INVOICE_TIMER_KINDS = frozenset({OVERDUE, REMINDER})
# Timers due at the same moment fire in this order: the invoice goes overdue before its
# after-due reminder goes out.
PRIORITY = {OVERDUE: 0, OUTCOME: 1, RETRY: 1, REMINDER: 2}


@dataclass(frozen=True)
class InvoiceFacts:
    """dunning's view of an invoice, from the latest invoice snapshot it has seen."""

    invoice_id: str
    tenant_id: str
    status: str
    due_date: date | None
    amount_due: int
    #: a succeeded payment covered the whole amount due (before invoicing said PAID)
    paid_in_full: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES and self.amount_due > 0 and not self.paid_in_full

    @property
    def is_closed(self) -> bool:
        return self.status in CLOSED_STATUSES or self.paid_in_full


@dataclass(frozen=True)
class TimerSpec:
    kind: str
    key: str  # unique per invoice: a key that has fired never fires again
    fire_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def priority(self) -> int:
        return PRIORITY[self.kind]


def start_of(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def past_due_at(due_date: date) -> datetime:
    return start_of(due_date + timedelta(days=1))


def overdue_at(due_date: date, policy: Policy) -> datetime:
    return past_due_at(due_date) + timedelta(days=policy.grace_period_days)


def plan_invoice_timers(
    invoice: InvoiceFacts,
    *,
    overdue_recorded: bool,
    dunning_stopped: bool,
    policy: Policy,
    now: datetime,
    existing_keys: frozenset[str] = frozenset(),
) -> list[TimerSpec]:
    """The overdue and reminder timers this invoice should have now.

    A reminder whose moment had already passed when it was first planned (an invoice finalized
    late) is not created; one that already exists stays, so reminders missed while the service
    was down still go out when it comes back.
    """
    if not invoice.is_open or invoice.due_date is None:
        return []
    due = invoice.due_date
    specs: list[TimerSpec] = []
    if not overdue_recorded and invoice.status != "OVERDUE":
        specs.append(TimerSpec(OVERDUE, OVERDUE, overdue_at(due, policy), {"dueDate": due.isoformat()}))
    if dunning_stopped:
        return specs
    reminders = [("before_due", d, start_of(due) - timedelta(days=d)) for d in policy.reminders_before_due_days]
    reminders += [("after_due", d, past_due_at(due) + timedelta(days=d)) for d in policy.reminders_after_due_days]
    for kind, days, at in reminders:
        key = f"reminder:{kind}:{days}"
        if at > now or key in existing_keys:
            specs.append(TimerSpec(REMINDER, key, at, {"kind": kind, "days": days}))
    return specs
