"""When overdue and reminder timers fall due, the policy's validation, and reading invoice
events in either shape."""

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.dunning.api.schemas import AdvanceTestClockIn
from services.dunning.app.clock import ManualClock
from services.dunning.consumers.invoices import invoice_facts
from services.dunning.domain.policy import Policy
from services.dunning.domain.schedule import InvoiceFacts, overdue_at, plan_invoice_timers
from shared.envelope import CloudEvent

DUE = date(2026, 12, 31)
INVOICE = InvoiceFacts("inv_1", "ten_1", "PENDING", DUE, 18000)
EARLY = datetime(2026, 12, 1, tzinfo=UTC)


def plan(invoice=INVOICE, policy=Policy(), now=EARLY, **kw):  # noqa: B008 - Policy is frozen
    kw.setdefault("overdue_recorded", False)
    kw.setdefault("dunning_stopped", False)
    return {s.key: s for s in plan_invoice_timers(invoice, policy=policy, now=now, **kw)}


def test_overdue_is_the_start_of_the_day_after_the_due_date_plus_grace():
    assert overdue_at(DUE, Policy()) == datetime(2027, 1, 1, tzinfo=UTC)
    assert overdue_at(DUE, Policy(grace_period_days=3)) == datetime(2027, 1, 4, tzinfo=UTC)
    assert plan()["overdue"].fire_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert plan()["overdue"].payload == {"dueDate": "2026-12-31"}


@pytest.mark.parametrize("status", ["DRAFT", "PAID", "VOID", "WRITTEN_OFF", "UNCOLLECTIBLE", "UNKNOWN"])
def test_no_timers_unless_the_invoice_is_open(status):
    assert plan(InvoiceFacts("inv_1", "ten_1", status, DUE, 18000)) == {}


def test_no_timers_when_nothing_is_due_or_paid_in_full():
    assert plan(InvoiceFacts("inv_1", "ten_1", "PENDING", DUE, 0)) == {}
    assert plan(InvoiceFacts("inv_1", "ten_1", "PENDING", DUE, 10, paid_in_full=True)) == {}


def test_overdue_invoice_needs_no_overdue_timer():
    assert "overdue" not in plan(InvoiceFacts("inv_1", "ten_1", "OVERDUE", DUE, 10))
    assert "overdue" not in plan(overdue_recorded=True)


def test_reminders_before_and_after_the_due_date():
    timers = plan(policy=Policy(reminders_before_due_days=[7, 1], reminders_after_due_days=[3]))
    assert timers["reminder:before_due:7"].fire_at == datetime(2026, 12, 24, tzinfo=UTC)
    assert timers["reminder:before_due:1"].fire_at == datetime(2026, 12, 30, tzinfo=UTC)
    assert timers["reminder:after_due:3"].fire_at == datetime(2027, 1, 4, tzinfo=UTC)
    assert timers["reminder:after_due:3"].payload == {"kind": "after_due", "days": 3}


def test_reminder_already_past_when_first_planned_is_skipped_but_a_missed_one_stays():
    policy = Policy(reminders_before_due_days=[7])
    late = datetime(2026, 12, 28, tzinfo=UTC)
    assert "reminder:before_due:7" not in plan(policy=policy, now=late)
    assert "reminder:before_due:7" in plan(policy=policy, now=late, existing_keys=frozenset({"reminder:before_due:7"}))


def test_reminder_due_exactly_now_when_first_planned_is_not_created():
    policy = Policy(reminders_before_due_days=[7])
    moment = datetime(2026, 12, 24, tzinfo=UTC)  # 7 days before DUE, 00:00 UTC
    assert "reminder:before_due:7" not in plan(policy=policy, now=moment)
    assert plan(policy=policy, now=moment - timedelta(microseconds=1))["reminder:before_due:7"].fire_at == moment


def test_stopped_dunning_keeps_the_overdue_timer_but_no_reminders():
    timers = plan(policy=Policy(reminders_after_due_days=[3]), dunning_stopped=True)
    assert list(timers) == ["overdue"]


def test_policy_validation():
    assert Policy().retry_intervals_days == [1, 3, 5, 7] and Policy().max_attempts == 4
    with pytest.raises(ValidationError):
        Policy(retry_intervals_days=[0])
    with pytest.raises(ValidationError):
        Policy(final_action="delete")
    with pytest.raises(ValidationError):
        Policy(reminders_before_due_days=[3, 3])
    with pytest.raises(ValidationError):
        Policy.model_validate({"retryIntervalsDays": [1], "bogus": 1})
    assert Policy.model_validate({"retryIntervalsDays": [2, 4], "finalAction": "leave_open"}).dump()[
        "retryIntervalsDays"
    ] == [2, 4]


def _event(type_, data, seq="3"):
    return CloudEvent.new(type=type_, source="/t", subject="inv_1", tenant_id="ten_1", data=data).model_copy(
        update={"sequence": seq}
    )


def test_reads_the_invoice_snapshot_and_the_first_skeletons_flat_shape():
    snap = {"id": "inv_1", "status": "PENDING", "dueDate": "2026-12-31", "amountDue": 18000}
    assert invoice_facts(_event("invoice.finalized", {"number": "INV-1", "invoice": snap})) == INVOICE
    flat = {"invoiceId": "inv_1", "status": "DRAFT", "dueDate": "2026-12-31", "amountDue": 18000}
    assert invoice_facts(_event("invoice.created", flat)).status == "DRAFT"
    assert invoice_facts(_event("invoice.deleted", {"invoice": snap})).status == "DELETED"
    assert invoice_facts(_event("credit_note.created", {"creditNote": {"id": "cn_1"}})) is None


def test_manual_clock_moves_forward_only_and_tells_listeners():
    clock, told = ManualClock(EARLY), []
    clock.on_change(lambda: told.append(clock.now()))
    clock.advance(timedelta(days=1))
    assert clock.now() == EARLY + timedelta(days=1) and told == [clock.now()]
    with pytest.raises(ValueError):
        clock.set(EARLY)


def test_advance_body_takes_a_time_or_an_amount():
    now = EARLY
    assert AdvanceTestClockIn.model_validate({"days": 2}).target(now) == now + timedelta(days=2)
    assert AdvanceTestClockIn.model_validate({"frozenTime": "2027-01-01T00:00:00Z"}).target(now) == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    with pytest.raises(ValidationError):
        AdvanceTestClockIn.model_validate({})
    with pytest.raises(ValidationError):
        AdvanceTestClockIn.model_validate({"days": 1, "frozenTime": "2027-01-01T00:00:00Z"})
