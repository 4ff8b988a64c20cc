"""The chaos audit's counting (tests/chaos/audit.py `tally`): what is lost, duplicated, stuck,
unverified, and what is allowed (absent when never acknowledged, redelivered at least once)."""

import copy

from tests.chaos.audit import Observed, tally
from tests.chaos.ledger import Op

EMAIL = "c1.run@chaos.example.com"


def op(id_, kind, acked=True, **result):
    return Op(id=id_, kind=kind, key=f"k-{id_}", started=1.0, ended=2.0, acked=acked, gave_up=not acked, result=result)


def event(id_, type_, **data):
    return {"id": id_, "type": type_, "data": {"invoice": {"customer": {"email": EMAIL}}, **data}}


def world():
    """One story, everything in order: customer, invoice, send, an offline part, a card payment
    for the rest, one refund."""
    ops = [
        op("op1", "customer", customer_id="cust_1", email=EMAIL),
        op("op2", "invoice", invoice_id="inv_1", total=1000),
        op("op3", "send", invoice_id="inv_1"),
        op("op4", "mark_paid", invoice_id="inv_1", amount=400, reference="ref-op4"),
        op("op5", "checkout", invoice_id="inv_1"),
        op("op6", "hosted_pay", invoice_id="inv_1", amount=600, payment_id="pay_1"),
        op(
            "op7",
            "refund",
            invoice_id="inv_1",
            payment_id="pay_1",
            amount=150,
            refund_id="re_1",
            refund_status="succeeded",
        ),
    ]
    events = [
        event("e1", "invoice.created"),
        event("e2", "invoice.finalized"),
        event("e3", "invoice.sent"),
        event("e4", "invoice.payment_received", reference="ref-op4", paymentId="pay_off", isFullyPaid=False),
        event("e5", "invoice.payment_received", paymentId="pay_1", isFullyPaid=True),
        event("e6", "invoice.paid"),
        event("e7", "invoice.refunded", refundId="re_1", paymentId="pay_1"),
    ]
    payment = {"id": "pay_1", "status": "PARTIALLY_REFUNDED", "amount": 600, "amountRefunded": 150}
    manual = {
        "id": "pay_off",
        "status": "SUCCEEDED",
        "amount": 400,
        "provider": "manual",
        "providerReference": "ref-op4",
    }
    hooks = [{"id": e["id"], "type": e["type"], "verified": True, "data": e["data"]} for e in events]
    hooks += [
        {"id": "p1", "type": "payment.succeeded", "verified": True, "data": {"paymentId": "pay_1"}},
        {"id": "p2", "type": "payment.refunded", "verified": True, "data": {"refundId": "re_1"}},
    ]
    obs = Observed(
        customers=[{"id": "cust_1", "metadata": {"chaosOp": "op1"}}],
        customer_found={"cust_1": True},
        invoices=[{"id": "inv_1", "metadata": {"chaosOp": "op2"}}],
        invoice_found={"inv_1": {"id": "inv_1", "number": "INV-1"}},
        invoice_events={"inv_1": events},
        payments_listed={"inv_1": [payment, manual]},
        payment_found={"pay_1": payment},
        webhooks=hooks,
        emails=[{"message_id": f"<m{e}@billstream>", "event_id": e} for e in ("e3", "e4", "e6")],
    )
    return ops, obs


def counts(t):
    return {k: getattr(t, k) for k in ("lost", "duplicated", "stuck", "unverified", "gave_up")}


ZERO = {"lost": 0, "duplicated": 0, "stuck": 0, "unverified": 0, "gave_up": 0}


def test_everything_there_once_counts_nothing_and_checks_every_fact():
    t = tally(*world())
    assert counts(t) == ZERO and not t.failed and t.findings == []
    assert t.checked >= 18  # 8 facts of 7 ops, 7 webhooks, 3 e-mails


def test_an_acknowledged_customer_missing_from_the_list_is_lost():
    ops, obs = world()
    obs.customers = []
    t = tally(ops, obs)
    assert counts(t) == {**ZERO, "lost": 1} and t.failed
    assert t.findings[0]["op"] == "op1" and "customer in the list" in t.findings[0]["detail"]


def test_an_unacknowledged_create_may_be_absent_but_not_there_twice():
    ops, obs = world()
    ops.append(op("op8", "invoice", acked=False, customer_id="cust_1"))
    assert counts(tally(ops, obs)) == {**ZERO, "gave_up": 1}
    obs.invoices += [{"id": "inv_8", "metadata": {"chaosOp": "op8"}}, {"id": "inv_9", "metadata": {"chaosOp": "op8"}}]
    t = tally(ops, obs)
    assert t.duplicated == 1 and t.findings[0]["op"] == "op8"


def test_an_offline_payment_applied_twice_is_duplicated():
    ops, obs = world()
    twice = copy.deepcopy(obs.invoice_events["inv_1"][3])
    twice["id"] = "e4b"
    obs.invoice_events["inv_1"].append(twice)
    obs.webhooks.append({"id": "e4b", "type": twice["type"], "verified": True, "data": twice["data"]})
    obs.emails.append({"message_id": "<m-e4b@billstream>", "event_id": "e4b"})
    t = tally(ops, obs)
    assert (t.duplicated, t.lost) == (1, 0) and t.findings[0]["reference"] == "ref-op4"


def test_an_offline_payment_needs_its_manual_payment_once():
    ops, obs = world()
    obs.payments_listed["inv_1"] = [p for p in obs.payments_listed["inv_1"] if p["id"] != "pay_off"]
    t = tally(ops, obs)
    assert counts(t) == {**ZERO, "lost": 1} and "manual payment" in t.findings[0]["detail"]
    ops, obs = world()
    obs.payments_listed["inv_1"].append({**obs.payments_listed["inv_1"][1], "id": "pay_off2"})
    t = tally(ops, obs)
    assert t.duplicated >= 1 and any("manual payment" in f["detail"] for f in t.findings)


def test_a_payment_left_processing_is_stuck_and_a_balance_charged_twice_is_duplicated():
    ops, obs = world()
    obs.payment_found["pay_1"] = {**obs.payment_found["pay_1"], "status": "PROCESSING"}
    assert counts(tally(ops, obs)) == {**ZERO, "stuck": 1}
    ops, obs = world()
    obs.payments_listed["inv_1"].append({"id": "pay_2", "status": "SUCCEEDED", "amount": 600})
    t = tally(ops, obs)
    assert t.duplicated == 1 and t.findings[0]["payment_ids"] == ["pay_1", "pay_off", "pay_2"]


def test_refunds_must_add_up():
    ops, obs = world()
    obs.payment_found["pay_1"] = {**obs.payment_found["pay_1"], "amountRefunded": 300}
    assert counts(tally(ops, obs)) == {**ZERO, "duplicated": 1}
    obs.payment_found["pay_1"]["amountRefunded"] = 0
    assert counts(tally(ops, obs)) == {**ZERO, "lost": 1}


def test_work_refused_as_already_committed_happened_and_counts_so():
    """409 idempotency_key_committed: the request's work committed but its answer was lost. Its
    refund and its create must be there (lost when missing), and the refund is no duplicate."""
    ops, obs = world()
    ops.append(
        Op(
            id="op9",
            kind="refund",
            key="k-op9",
            started=1.0,
            ended=2.0,
            committed=True,
            result={"invoice_id": "inv_1", "payment_id": "pay_1", "amount": 150},
        )
    )
    obs.payment_found["pay_1"] = {**obs.payment_found["pay_1"], "amountRefunded": 300}
    assert counts(tally(ops, obs)) == ZERO
    obs.payment_found["pay_1"]["amountRefunded"] = 150  # only the acknowledged one: the other lost
    assert counts(tally(ops, obs)) == {**ZERO, "lost": 1}
    ops, obs = world()
    ops.append(
        Op(
            id="op8",
            kind="invoice",
            key="k-op8",
            started=1.0,
            ended=2.0,
            committed=True,
            result={"customer_id": "cust_1"},
        )
    )
    t = tally(ops, obs)
    assert counts(t) == {**ZERO, "lost": 1} and t.findings[0]["op"] == "op8"


def test_a_missing_webhook_is_stuck_while_its_delivery_is_pending_else_lost():
    ops, obs = world()
    obs.webhooks = [w for w in obs.webhooks if w["id"] != "e2"]
    assert counts(tally(ops, obs)) == {**ZERO, "lost": 1}
    obs.undelivered = {"e2"}
    assert counts(tally(ops, obs)) == {**ZERO, "stuck": 1}


def test_redelivery_is_allowed_but_a_bad_signature_is_not():
    ops, obs = world()
    obs.webhooks.append(dict(obs.webhooks[0]))  # the same webhook-id again: at least once
    obs.emails.append(dict(obs.emails[0]))  # the same Message-ID again
    t = tally(ops, obs)
    assert counts(t) == ZERO and t.redelivered == 2
    obs.webhooks.append({"id": "e9", "type": "invoice.updated", "verified": False, "data": {}})
    assert counts(tally(ops, obs)) == {**ZERO, "unverified": 1}


def test_two_distinct_emails_for_one_event_are_duplicated_and_a_missing_one_lost():
    ops, obs = world()
    obs.emails.append({"message_id": "<other@billstream>", "event_id": "e3"})
    assert counts(tally(ops, obs)) == {**ZERO, "duplicated": 1}
    obs.emails = [m for m in obs.emails if m["event_id"] != "e6"]
    assert tally(ops, obs).lost == 1


def test_one_number_on_two_invoices_is_duplicated():
    ops, obs = world()
    obs.invoice_found["inv_x"] = {"id": "inv_x", "number": "INV-1"}
    assert tally(ops, obs).duplicated == 1
