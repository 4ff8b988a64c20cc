"""The payment aggregate and the collection rules: pure functions, no servers."""

from datetime import UTC, datetime, timedelta

import pytest

from services.payments.app.refunds import allocate
from services.payments.domain.collection import Balance, amount_to_collect
from services.payments.domain.events import registry
from services.payments.domain.payment import (
    ManualPayment,
    Outcome,
    Payment,
    StartPayment,
    check_refund,
    decide_manual,
    decide_outcome,
    decide_processing,
    decide_refund,
    decide_start,
    evolve,
    fold,
)
from shared.errors import Conflict, Refused

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def run(state: Payment, decided) -> Payment:
    for event_type, data in decided:
        state = evolve(state, event_type, data)
    return state


def started(amount: int = 10000, **kw) -> Payment:
    cmd = StartPayment("pay_1", "inv_1", "cust_1", amount, "USD", "sandbox", "card", **kw)
    return run(Payment(), decide_start(Payment(), cmd, T0))


def succeeded(amount: int = 10000) -> Payment:
    state = started(amount)
    state = run(state, decide_processing(state, "ch_1", T0))
    return run(state, decide_outcome(state, Outcome(True, "ch_1"), T0 + timedelta(seconds=1)))


def test_fold_reads_the_stream_back_into_the_same_payment():
    state, history = Payment(), []
    for decide in (
        lambda s: decide_start(s, StartPayment("pay_1", "inv_1", None, 700, "USD", "sandbox", "card"), T0),
        lambda s: decide_processing(s, "ch_1", T0),
        lambda s: decide_outcome(s, Outcome(True, "ch_1"), T0),
    ):
        decided = decide(state)
        history += [(t, data, T0) for t, data in decided]
        state = run(state, decided)
    folded = fold(history, "pay_1")
    assert folded == state and (folded.version, folded.snapshot.status, folded.snapshot.amount) == (3, "SUCCEEDED", 700)


def test_start_is_pending_with_the_snapshot():
    [(event_type, data)] = decide_start(
        Payment(),
        StartPayment("pay_1", "inv_1", None, 500, "UGX", "sandbox", "mobile_money", automatic=True, attempt=2),
        T0,
    )
    assert event_type == "payment.created"
    snap = data.dump()["payment"]
    assert snap["status"] == "PENDING" and snap["object"] == "payment" and snap["invoiceId"] == "inv_1"
    assert snap["automatic"] is True and snap["attempt"] == 2 and snap["createdAt"] == "2026-11-23T12:00:00Z"


@pytest.mark.parametrize("amount", [0, -5])
def test_start_needs_a_positive_amount(amount):
    with pytest.raises(Refused) as err:
        decide_start(Payment(), StartPayment("p", "i", None, amount, "USD", "sandbox", "card"), T0)
    assert err.value.code == "amount_invalid"


def test_success_path_and_duplicate_callbacks_add_nothing():
    state = started()
    [(t, _)] = decide_processing(state, "ch_1", T0)
    assert t == "payment.processing"
    state = succeeded()
    assert state.status == "SUCCEEDED" and state.snapshot.provider_reference == "ch_1"
    assert decide_outcome(state, Outcome(True), T0) == []  # the same callback again
    assert decide_outcome(state, Outcome(False, code="card_declined"), T0) == []  # never undoes a success
    assert decide_processing(state, "ch_1", T0) == []  # a late "processing" answer


def test_failure_carries_reason_code_automatic_and_attempt():
    state = started(automatic=True, attempt=3)
    [(t, data)] = decide_outcome(state, Outcome(False, "ch_9", "insufficient_funds", "No money"), T0)
    body = data.dump()
    assert t == "payment.failed"
    assert (body["reasonCode"], body["reason"], body["automatic"], body["attempt"]) == (
        "insufficient_funds",
        "No money",
        True,
        3,
    )
    failed = run(state, [(t, data)])
    assert decide_outcome(failed, Outcome(False, code="x"), T0) == []


def test_late_success_after_a_failure_is_recorded():
    state = started()
    state = run(state, decide_outcome(state, Outcome(False, code="approval_timeout"), T0))
    [(t, data)] = decide_outcome(state, Outcome(True, "ch_1"), T0)
    assert t == "payment.succeeded" and data.payment.failure_code is None


def test_success_callback_after_refunds_records_nothing():
    state = succeeded(10000)
    state = run(state, decide_refund(state, "re_1", 4000, "Overcharged", T0))
    assert state.status == "PARTIALLY_REFUNDED"
    assert decide_outcome(state, Outcome(True, "ch_1"), T0) == []
    state = run(state, decide_refund(state, "re_2", 6000, "Rest", T0))
    assert state.status == "REFUNDED"
    assert decide_outcome(state, Outcome(True, "ch_1"), T0) == []
    assert (state.status, state.snapshot.amount_refunded) == ("REFUNDED", 10000)


def test_partial_refunds_until_fully_refunded_and_over_refund_refused():
    state = succeeded(10000)
    state = run(state, decide_refund(state, "re_1", 4000, "Overcharged", T0))
    assert (state.status, state.snapshot.amount_refunded, state.refundable) == ("PARTIALLY_REFUNDED", 4000, 6000)
    with pytest.raises(Refused) as err:
        check_refund(state, 6001)
    assert err.value.code == "refund_exceeds_payment" and err.value.field == "amount"
    assert check_refund(state, None) == 6000  # no amount: all that is left
    [(t, data)] = decide_refund(state, "re_2", 6000, "Rest", T0)
    assert t == "payment.refunded" and (data.amount, data.amount_refunded) == (6000, 10000)
    state = run(state, [(t, data)])
    assert state.status == "REFUNDED"
    with pytest.raises(Refused) as err:
        check_refund(state, 1)
    assert err.value.code == "payment_not_refundable" and isinstance(err.value, Conflict)


def test_only_succeeded_payments_are_refundable():
    with pytest.raises(Refused) as err:
        check_refund(started(), 100)
    assert err.value.code == "payment_not_refundable"


def test_events_roundtrip_through_the_registry():
    state = succeeded()
    for event_type, data in decide_refund(state, "re_1", 1, "r", T0):
        event = registry.new_event(event_type, data, source="/t", subject="pay_1", tenant_id="ten_1")
        assert registry.load(event) == data
        assert event.dataschema == "urn:billstream:payment.refunded:v1"


def balance(**kw) -> Balance:
    values = dict(
        status="PENDING", currency="UGX", total=100000, amount_due=100000, unacknowledged=0, allow_partial=False
    )
    return Balance(**{**values, **kw})


def test_collect_the_remaining_balance_by_default():
    assert amount_to_collect(balance(), None) == 100000
    assert amount_to_collect(balance(unacknowledged=30000, allow_partial=True), None) == 70000
    assert balance(unacknowledged=30000).paid == 30000


@pytest.mark.parametrize(
    ("kw", "requested", "code"),
    [
        ({"status": "DRAFT"}, None, "invoice_not_payable"),
        ({"status": "VOID"}, None, "invoice_not_payable"),
        ({"status": "PAID", "amount_due": 0}, None, "invoice_not_payable"),
        ({"unacknowledged": 100000}, None, "invoice_already_paid"),
        ({"allow_partial": True}, 100001, "amount_exceeds_balance"),
        ({"allow_partial": False}, 500, "partial_payment_not_allowed"),
        ({"allow_partial": True}, 0, "amount_invalid"),
    ],
)
def test_collection_refusals_have_stable_codes(kw, requested, code):
    with pytest.raises(Refused) as err:
        amount_to_collect(balance(**kw), requested)
    assert err.value.code == code


def test_partial_amount_when_allowed():
    assert amount_to_collect(balance(allow_partial=True, status="PARTIALLY_PAID"), 25000) == 25000


def test_refunds_in_flight_are_reserved():
    state = succeeded(10000)
    assert check_refund(state, None, reserved=3000) == 7000
    with pytest.raises(Refused) as err:
        check_refund(state, 7001, reserved=3000)
    assert err.value.code == "refund_exceeds_payment"
    with pytest.raises(Refused) as err:
        check_refund(state, None, reserved=10000)
    assert err.value.code == "refund_in_progress"


MANUAL = ManualPayment("pay_m", "inv_1", "cust_1", 5000, "UGX", "cash", "TX-1", "2026-11-30")


def test_a_manual_payment_is_recorded_succeeded_once_and_can_be_refunded():
    decided = decide_manual(Payment(), MANUAL, T0)
    assert [t for t, _ in decided] == ["payment.succeeded"]
    state = run(Payment(), decided)
    s = state.snapshot
    assert (s.status, s.provider, s.method, s.provider_reference, s.paid_on) == (
        "SUCCEEDED",
        "manual",
        "cash",
        "TX-1",
        "2026-11-30",
    )
    assert decide_manual(state, MANUAL, T0) == []  # a redelivered invoice.payment_received
    refunded = run(state, decide_refund(state, "re_1", 2000, "returned", T0))
    assert (refunded.snapshot.status, refunded.snapshot.amount_refunded) == ("PARTIALLY_REFUNDED", 2000)


def test_an_invoice_refund_takes_from_the_newest_payment_first():
    payments = [("pay_new", 7000), ("pay_spent", 0), ("pay_old", 3000)]
    assert allocate(payments, 8000) == [("pay_new", 7000), ("pay_old", 1000)]
    assert allocate(payments, 7000) == [("pay_new", 7000)]
    assert allocate(payments, None) == [("pay_new", 7000), ("pay_old", 3000)]
    with pytest.raises(Refused) as too_much:
        allocate(payments, 10001)
    assert too_much.value.code == "refund_exceeds_payments"
    with pytest.raises(Conflict) as nothing:
        allocate([("pay_spent", 0)], None)
    assert nothing.value.code == "invoice_not_refundable"
