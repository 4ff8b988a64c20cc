"""The dunning process of one invoice: pure decide/evolve functions, no I/O and no clock.

Each decision takes the state folded from the invoice's dunning stream, the facts it needs and
`now` (the tenant's time), and returns the events to append plus the timers to set or cancel.
Dunning starts with the first thing it does for an invoice (a reminder, recording the overdue,
or scheduling a retry): status IN_PROGRESS until SUCCESS, EXHAUSTED or STOPPED, which are final.
Before that the status is null, which only the API shows (every event carries a status).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.errors import Conflict

from .events import (
    DueDatePassed,
    DunningEvent,
    DunningSnapshot,
    Exhausted,
    ReminderDue,
    RetryDue,
    RetryScheduled,
    RetryUnanswered,
    Status,
    Stopped,
    Succeeded,
)
from .policy import Policy
from .schedule import OUTCOME, REMINDER, RETRY, InvoiceFacts, TimerSpec

IN_PROGRESS, EXHAUSTED, STOPPED, SUCCESS = "IN_PROGRESS", "EXHAUSTED", "STOPPED", "SUCCESS"
FINAL = frozenset({EXHAUSTED, STOPPED, SUCCESS})
# How long a retry may go without an outcome (payment.succeeded or .failed) before it counts as
# failed: far longer than any charge takes, short enough that dunning never stalls for good.
OUTCOME_TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class Dunning:
    invoice_id: str
    version: int = 0
    status: Status | None = None
    attempts: int = 0  # retries made so far
    next_retry_at: datetime | None = None
    updated_at: datetime | None = None
    overdue_recorded: bool = False

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def retry_scheduled(self) -> bool:
        return self.status == IN_PROGRESS and self.next_retry_at is not None

    def snapshot(self) -> DunningSnapshot:
        return DunningSnapshot(
            invoice_id=self.invoice_id,
            status=self.status,
            attempts=self.attempts,
            next_retry_at=self.next_retry_at,
            updated_at=self.updated_at,
        )


@dataclass(frozen=True)
class Decision:
    events: list[DunningEvent] = field(default_factory=list)
    schedule: list[TimerSpec] = field(default_factory=list)
    cancel: frozenset[str] = frozenset()  # timer kinds whose pending timers to cancel


NOTHING = Decision()


def evolve(state: Dunning, event: DunningEvent) -> Dunning:
    s = event.dunning
    return replace(
        state,
        version=state.version + 1,
        status=s.status,
        attempts=s.attempts,
        next_retry_at=s.next_retry_at,
        updated_at=s.updated_at,
        overdue_recorded=state.overdue_recorded or isinstance(event, DueDatePassed),
    )


def fold(history: Sequence[tuple[str, DunningEvent, datetime]], subject: str) -> Dunning:
    """The invoice's dunning from its stream: (type, event, time) in order, like every fold."""
    state = Dunning(subject)
    for _, event, _ in history:
        state = evolve(state, event)
    return state


class _Emitter:
    """Builds events whose snapshot is the state after each of them."""

    def __init__(self, state: Dunning, now: datetime) -> None:
        self.state, self.now = state, now
        self.events: list[DunningEvent] = []

    def emit(self, cls: type[DunningEvent], changes: dict[str, Any] | None = None, **facts: Any) -> None:
        changes = {"status": self.state.status or IN_PROGRESS, **(changes or {})}
        after = replace(self.state, updated_at=self.now, **changes)
        event = cls(invoice_id=self.state.invoice_id, dunning=after.snapshot(), **facts)
        self.events.append(event)
        self.state = evolve(self.state, event)


def on_payment_failed(
    state: Dunning, policy: Policy, now: datetime, *, automatic: bool, invoice_closed: bool
) -> Decision:
    """An automatic collection failed: schedule the next retry by the policy, or give up.

    An invoice dunning has not heard of yet counts as open: the failure may simply have
    overtaken the invoice's own events (they travel on another topic).
    """
    if not automatic or invoice_closed or state.finished or state.retry_scheduled:
        return NOTHING  # manual attempts and failures while a retry is pending change nothing
    out = _Emitter(state, now)
    return _after_failed_attempt(out, policy)


def _after_failed_attempt(out: _Emitter, policy: Policy) -> Decision:
    """Schedule the next retry by the policy, or give up when the retries ran out."""
    state, now = out.state, out.now
    if state.attempts >= policy.max_attempts:
        out.emit(
            Exhausted,
            {"status": EXHAUSTED, "next_retry_at": None},
            attempts=state.attempts,
            final_action=policy.final_action,
        )
        # Reminders go on: an invoice left open is still owed (void/uncollectible close it).
        return Decision(out.events, cancel=frozenset({RETRY, OUTCOME}))
    attempt = state.attempts + 1
    at = now + timedelta(days=policy.retry_intervals_days[state.attempts])
    out.emit(RetryScheduled, {"status": IN_PROGRESS, "next_retry_at": at}, attempt=attempt, scheduled_at=at)
    return Decision(
        out.events,
        schedule=[TimerSpec(RETRY, f"retry:{attempt}", at, {"attempt": attempt})],
        cancel=frozenset({OUTCOME}),
    )


def on_retry_timer(state: Dunning, now: datetime, *, attempt: int) -> Decision:
    if not state.retry_scheduled or attempt != state.attempts + 1:
        return NOTHING  # stale: dunning ended or moved on since the timer was set
    out = _Emitter(state, now)
    out.emit(RetryDue, {"attempts": attempt, "next_retry_at": None}, attempt=attempt)
    watchdog = TimerSpec(OUTCOME, f"outcome:{attempt}", now + OUTCOME_TIMEOUT, {"attempt": attempt})
    return Decision(out.events, schedule=[watchdog])


def on_outcome_timer(state: Dunning, policy: Policy, now: datetime, *, attempt: int, invoice_closed: bool) -> Decision:
    """The watchdog of retry `attempt`: if dunning still awaits its outcome, count it as failed."""
    awaiting = state.status == IN_PROGRESS and not state.retry_scheduled and state.attempts == attempt
    if not awaiting or invoice_closed:
        return NOTHING  # the outcome came (or dunning ended) before the watchdog
    out = _Emitter(state, now)
    out.emit(RetryUnanswered, attempt=attempt)
    return _after_failed_attempt(out, policy)


def on_payment_succeeded(state: Dunning, now: datetime) -> Decision:
    if state.status != IN_PROGRESS:
        return NOTHING
    out = _Emitter(state, now)
    out.emit(Succeeded, {"status": SUCCESS, "next_retry_at": None})
    return Decision(out.events, cancel=frozenset({RETRY, OUTCOME}))


def on_invoice_closed(state: Dunning, now: datetime, *, invoice_status: str) -> Decision:
    """Paid, voided, written off, marked uncollectible or deleted: nothing more falls due."""
    cancel = frozenset({"overdue", RETRY, REMINDER, OUTCOME})
    if state.status != IN_PROGRESS:
        return Decision(cancel=cancel)
    out = _Emitter(state, now)
    if invoice_status == "PAID":
        out.emit(Succeeded, {"status": SUCCESS, "next_retry_at": None})
    else:
        out.emit(Stopped, {"status": STOPPED, "next_retry_at": None})
    return Decision(out.events, cancel=cancel)


def stop(state: Dunning, now: datetime, *, invoice_closed: bool = False) -> Decision:
    """POST stop-dunning: no more retries or reminders. Stopping twice is not an error."""
    if state.status == STOPPED:
        return NOTHING
    if state.status is None and invoice_closed:
        raise Conflict("invoice_not_open", "This invoice is paid, void or closed: it has no dunning to stop.")
    if state.finished:
        raise Conflict(
            "dunning_finished", f"Dunning for this invoice already ended with {state.status}; there is nothing to stop."
        )
    out = _Emitter(state, now)
    out.emit(Stopped, {"status": STOPPED, "next_retry_at": None})
    return Decision(out.events, cancel=frozenset({RETRY, REMINDER, OUTCOME}))


def on_overdue_timer(state: Dunning, invoice: InvoiceFacts, now: datetime) -> Decision:
    if state.overdue_recorded or not invoice.is_open or invoice.due_date is None:
        return NOTHING  # paid or voided since the timer was set
    out = _Emitter(state, now)
    out.emit(DueDatePassed, due_date=invoice.due_date)
    return Decision(out.events)


def on_reminder_timer(state: Dunning, invoice: InvoiceFacts, now: datetime, *, kind: str, days: int) -> Decision:
    if not invoice.is_open or state.status == STOPPED:
        return NOTHING
    out = _Emitter(state, now)
    out.emit(ReminderDue, kind=kind, days=days)
    return Decision(out.events)
