"""Dunning's decisions as pure functions: no servers, no clock but the one passed in."""

from datetime import UTC, date, datetime, timedelta

import pytest

from services.dunning.domain import dunning as d
from services.dunning.domain.events import (
    DueDatePassed,
    Exhausted,
    ReminderDue,
    RetryDue,
    RetryScheduled,
    RetryUnanswered,
    Stopped,
    Succeeded,
    registry,
    type_of,
)
from services.dunning.domain.policy import Policy
from services.dunning.domain.schedule import InvoiceFacts
from shared.errors import Conflict

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = Policy(retry_intervals_days=[1, 3, 5, 7], final_action="void")
OPEN = InvoiceFacts("inv_1", "ten_1", "PENDING", date(2026, 11, 30), 5000)


def run(state, decision):
    for e in decision.events:
        state = d.evolve(state, e)
    return state


def test_first_automatic_failure_schedules_retry_one_a_day_later():
    state = d.Dunning("inv_1")
    decision = d.on_payment_failed(state, POLICY, T0, automatic=True, invoice_closed=False)
    [event] = decision.events
    assert isinstance(event, RetryScheduled)
    assert (event.attempt, event.scheduled_at) == (1, T0 + timedelta(days=1))
    assert event.dunning.status == "IN_PROGRESS" and event.dunning.next_retry_at == T0 + timedelta(days=1)
    [timer] = decision.schedule
    assert (timer.kind, timer.key, timer.fire_at, timer.payload) == (
        "retry",
        "retry:1",
        T0 + timedelta(days=1),
        {"attempt": 1},
    )


def test_manual_failure_and_closed_invoice_start_nothing():
    state = d.Dunning("inv_1")
    assert d.on_payment_failed(state, POLICY, T0, automatic=False, invoice_closed=False) == d.NOTHING
    assert d.on_payment_failed(state, POLICY, T0, automatic=True, invoice_closed=True) == d.NOTHING


def test_full_ladder_ends_exhausted_with_the_final_action():
    state, now = d.Dunning("inv_1"), T0
    state = run(state, d.on_payment_failed(state, POLICY, now, automatic=True, invoice_closed=False))
    schedule = []
    for attempt, days in enumerate(POLICY.retry_intervals_days, start=1):
        assert state.next_retry_at == now + timedelta(days=days)
        now = state.next_retry_at
        schedule.append(now)
        fired = d.on_retry_timer(state, now, attempt=attempt)
        assert [type(e) for e in fired.events] == [RetryDue]
        state = run(state, fired)
        assert (state.attempts, state.next_retry_at) == (attempt, None)
        state = run(state, d.on_payment_failed(state, POLICY, now, automatic=True, invoice_closed=False))
    assert state.status == "EXHAUSTED" and state.attempts == 4
    assert schedule == [T0 + timedelta(days=n) for n in (1, 4, 9, 16)]


def test_exhausted_event_carries_attempts_and_final_action():
    state = d.Dunning("inv_1", version=9, status="IN_PROGRESS", attempts=4)
    [event] = d.on_payment_failed(state, POLICY, T0, automatic=True, invoice_closed=False).events
    assert isinstance(event, Exhausted)
    assert (event.attempts, event.final_action, event.dunning.status) == (4, "void", "EXHAUSTED")


def test_zero_retries_exhausts_at_once():
    [event] = d.on_payment_failed(
        d.Dunning("inv_1"), Policy(retry_intervals_days=[]), T0, automatic=True, invoice_closed=False
    ).events
    assert isinstance(event, Exhausted) and event.attempts == 0


def test_failure_while_a_retry_is_pending_changes_nothing():
    state = run(
        d.Dunning("inv_1"), d.on_payment_failed(d.Dunning("inv_1"), POLICY, T0, automatic=True, invoice_closed=False)
    )
    assert d.on_payment_failed(state, POLICY, T0, automatic=True, invoice_closed=False) == d.NOTHING


def test_success_on_second_retry_ends_in_success_and_cancels_retries():
    state = run(
        d.Dunning("inv_1"), d.on_payment_failed(d.Dunning("inv_1"), POLICY, T0, automatic=True, invoice_closed=False)
    )
    state = run(state, d.on_retry_timer(state, T0, attempt=1))
    state = run(state, d.on_payment_failed(state, POLICY, T0, automatic=True, invoice_closed=False))
    state = run(state, d.on_retry_timer(state, T0, attempt=2))
    decision = d.on_payment_succeeded(state, T0)
    assert [type(e) for e in decision.events] == [Succeeded] and "retry" in decision.cancel
    state = run(state, decision)
    assert (state.status, state.attempts) == ("SUCCESS", 2)
    assert d.on_payment_succeeded(state, T0) == d.NOTHING  # a second success is nothing new


def test_stale_retry_timer_does_nothing():
    state = d.Dunning("inv_1", status="STOPPED", attempts=1)
    assert d.on_retry_timer(state, T0, attempt=2) == d.NOTHING


def test_stop_cancels_retries_and_reminders_and_is_idempotent():
    state = run(
        d.Dunning("inv_1"), d.on_payment_failed(d.Dunning("inv_1"), POLICY, T0, automatic=True, invoice_closed=False)
    )
    decision = d.stop(state, T0)
    assert [type(e) for e in decision.events] == [Stopped] and decision.cancel == {"retry", "reminder", "outcome"}
    state = run(state, decision)
    assert state.status == "STOPPED" and state.next_retry_at is None
    assert d.stop(state, T0) == d.NOTHING
    assert d.on_payment_failed(state, POLICY, T0, automatic=True, invoice_closed=False) == d.NOTHING


def test_stopping_finished_dunning_is_a_conflict():
    with pytest.raises(Conflict) as err:
        d.stop(d.Dunning("inv_1", status="SUCCESS"), T0)
    assert err.value.code == "dunning_finished"


@pytest.mark.parametrize(("status", "expected"), [("PAID", Succeeded), ("VOID", Stopped), ("WRITTEN_OFF", Stopped)])
def test_invoice_closed_during_retries(status, expected):
    state = d.Dunning("inv_1", version=1, status="IN_PROGRESS", next_retry_at=T0)
    decision = d.on_invoice_closed(state, T0, invoice_status=status)
    assert [type(e) for e in decision.events] == [expected]
    assert decision.cancel == {"overdue", "retry", "reminder", "outcome"}


def test_invoice_closed_outside_dunning_only_cancels_timers():
    decision = d.on_invoice_closed(d.Dunning("inv_1"), T0, invoice_status="PAID")
    assert decision.events == [] and decision.cancel == {"overdue", "retry", "reminder", "outcome"}


def test_overdue_timer_records_the_due_date_once():
    [event] = d.on_overdue_timer(d.Dunning("inv_1"), OPEN, T0).events
    assert isinstance(event, DueDatePassed) and event.due_date == date(2026, 11, 30)
    assert event.dunning.status == "IN_PROGRESS"  # the first thing dunning does starts it
    state = run(d.Dunning("inv_1"), d.on_overdue_timer(d.Dunning("inv_1"), OPEN, T0))
    assert state.overdue_recorded and d.on_overdue_timer(state, OPEN, T0) == d.NOTHING


def test_overdue_timer_of_a_paid_invoice_does_nothing():
    paid = InvoiceFacts("inv_1", "ten_1", "PAID", date(2026, 11, 30), 0)
    assert d.on_overdue_timer(d.Dunning("inv_1"), paid, T0) == d.NOTHING


def test_reminders_stop_with_dunning():
    [event] = d.on_reminder_timer(d.Dunning("inv_1"), OPEN, T0, kind="after_due", days=7).events
    assert isinstance(event, ReminderDue) and (event.kind, event.days) == ("after_due", 7)
    assert d.on_reminder_timer(d.Dunning("inv_1", status="STOPPED"), OPEN, T0, kind="after_due", days=7) == d.NOTHING


def test_events_serialise_as_the_contract_says():
    state = d.Dunning("inv_1")
    [event] = d.on_payment_failed(state, POLICY, T0, automatic=True, invoice_closed=False).events
    ce = registry.new_event(type_of(event), event, source="/t", subject="inv_1", tenant_id="ten_1")
    assert ce.type == "dunning.retry_scheduled" and ce.dataschema == "urn:billstream:dunning.retry_scheduled:v1"
    assert ce.data == {
        "invoiceId": "inv_1",
        "attempt": 1,
        "scheduledAt": "2026-12-02T09:00:00Z",
        "dunning": {
            "invoiceId": "inv_1",
            "status": "IN_PROGRESS",
            "attempts": 0,
            "nextRetryAt": "2026-12-02T09:00:00Z",
            "updatedAt": "2026-12-01T09:00:00Z",
        },
    }
    assert registry.load(ce) == event  # and reads back into the same model


def test_fold_rebuilds_the_state_from_events():
    state = d.Dunning("inv_1")
    events = []
    for decision_of in (
        lambda s: d.on_payment_failed(s, POLICY, T0, automatic=True, invoice_closed=False),
        lambda s: d.on_retry_timer(s, T0, attempt=1),
    ):
        decision = decision_of(state)
        events += decision.events
        state = run(state, decision)
    assert d.fold([(type_of(e), e, T0) for e in events], "inv_1") == state and state.version == 2


def test_an_overdue_invoice_paid_later_ends_dunning_in_success():
    state = run(d.Dunning("inv_1"), d.on_overdue_timer(d.Dunning("inv_1"), OPEN, T0))
    [event] = d.on_invoice_closed(state, T0, invoice_status="PAID").events
    assert isinstance(event, Succeeded) and event.dunning.status == "SUCCESS"


def test_a_reminder_keeps_a_final_status():
    exhausted = d.Dunning("inv_1", version=3, status="EXHAUSTED", attempts=4)
    [event] = d.on_reminder_timer(exhausted, OPEN, T0, kind="after_due", days=7).events
    assert event.dunning.status == "EXHAUSTED"


def test_stopping_a_closed_invoice_never_in_dunning_is_a_conflict():
    with pytest.raises(Conflict) as err:
        d.stop(d.Dunning("inv_1"), T0, invoice_closed=True)
    assert err.value.code == "invoice_not_open"
    [event] = d.stop(d.Dunning("inv_1"), T0).events  # an open invoice can opt out before it starts
    assert event.dunning.status == "STOPPED"


def test_a_retry_sets_a_watchdog_that_counts_a_silent_attempt_as_failed():
    state = run(
        d.Dunning("inv_1"), d.on_payment_failed(d.Dunning("inv_1"), POLICY, T0, automatic=True, invoice_closed=False)
    )
    due = d.on_retry_timer(state, T0 + timedelta(days=1), attempt=1)
    [watchdog] = due.schedule
    assert (watchdog.kind, watchdog.key, watchdog.fire_at) == (
        "outcome",
        "outcome:1",
        T0 + timedelta(days=1) + d.OUTCOME_TIMEOUT,
    )
    state = run(state, due)
    later = watchdog.fire_at
    fired = d.on_outcome_timer(state, POLICY, later, attempt=1, invoice_closed=False)
    assert [type(e) for e in fired.events] == [RetryUnanswered, RetryScheduled]
    assert fired.events[1].attempt == 2 and fired.events[1].scheduled_at == later + timedelta(days=3)
    # The outcome came first, the invoice closed, or it is another attempt's watchdog: nothing.
    answered = run(state, d.on_payment_failed(state, POLICY, later, automatic=True, invoice_closed=False))
    assert d.on_outcome_timer(answered, POLICY, later, attempt=1, invoice_closed=False) == d.NOTHING
    assert d.on_outcome_timer(state, POLICY, later, attempt=1, invoice_closed=True) == d.NOTHING
    assert d.on_outcome_timer(state, POLICY, later, attempt=2, invoice_closed=False) == d.NOTHING


def test_a_silent_last_retry_exhausts():
    state = d.Dunning("inv_1", version=8, status="IN_PROGRESS", attempts=4)
    fired = d.on_outcome_timer(state, POLICY, T0, attempt=4, invoice_closed=False)
    assert [type(e) for e in fired.events] == [RetryUnanswered, Exhausted]
