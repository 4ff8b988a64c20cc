"""The invoice aggregate: every transition, every refusal, and the balance invariant."""

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.invoicing.domain import customer as cust
from services.invoicing.domain import events as ev
from services.invoicing.domain import invoice as inv
from services.invoicing.domain.tenant import NewKey, decide_create_tenant, decide_revoke_key
from shared.errors import Conflict, Refused

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


def fields(*amounts: int, partial: bool = True, **kw) -> ev.DraftFields:
    return ev.DraftFields(
        customer=ev.CustomerRef(id="cust_1", name="Jane"),
        currency="UGX",
        due_date=date(2026, 12, 1),
        items=[ev.LineData(description=f"line {i}", quantity=1, unit_amount=a) for i, a in enumerate(amounts)],
        allow_partial_payments=partial,
        **kw,
    )


def apply(state: inv.Invoice, facts: list[inv.Fact], at: datetime = T0) -> inv.Invoice:
    for event_type, fact in facts:
        state = inv.evolve(state, event_type, fact, subject="inv_1", at=at)
    return state


def draft(*amounts: int, **kw) -> inv.Invoice:
    s = inv.Invoice(id="inv_1")
    return apply(s, inv.decide_create(s, fields(*amounts, **kw)))


def pending(*amounts: int, **kw) -> inv.Invoice:
    s = draft(*amounts, **kw)
    return apply(s, inv.decide_finalize(s, number="INV-2026-000001", credit_available=0))


def pay(s: inv.Invoice, amount: int, pid: str = "pay_1", **kw) -> tuple[inv.Invoice, list]:
    facts = inv.decide_payment(s, payment_id=pid, amount=amount, method="cash", **kw)
    return apply(s, facts), facts


def test_draft_then_finalize_numbers_and_awaits_payment():
    s = draft(1000, 500)
    assert (s.status, s.amount_due, s.number) == ("DRAFT", 1500, None)
    s = apply(s, inv.decide_finalize(s, number="INV-2026-000007", credit_available=0))
    assert (s.status, s.number, s.issued_on) == ("PENDING", "INV-2026-000007", T0.date())
    with pytest.raises(Conflict) as err:
        inv.decide_finalize(s, number="INV-2026-000008", credit_available=0)
    assert err.value.code == "invoice_pending"


def test_only_drafts_are_edited_and_items_replace_the_list():
    s = draft(1000, 500)
    s = apply(
        s, inv.decide_update(s, ev.DraftFields(items=[ev.LineData(description="new", quantity=3, unit_amount=7)]))
    )
    assert s.totals.total == 21 and [i.description for i in s.fields.items] == ["new"]
    assert s.fields.currency == "UGX"  # untouched fields stay
    with pytest.raises(Conflict) as err:
        inv.decide_update(pending(100), ev.DraftFields(notes="late"))
    assert err.value.code == "invoice_not_editable"


def test_charges_are_added_to_a_pending_draft():
    s = draft(100)
    s = apply(s, inv.decide_add_charge(s, ev.LineData(description="usage", quantity=2, unit_amount=50)))
    assert s.totals.total == 200 and len(s.fields.items) == 2


def test_send_finalizes_a_draft_and_records_when():
    s = draft(100)
    facts = inv.decide_send(s, number="INV-2026-000002", credit_available=0)
    assert [t for t, _ in facts] == ["invoice.finalized", "invoice.sent"]
    s = apply(s, facts)
    assert s.status == "PENDING" and s.sent_at == T0
    assert [t for t, _ in inv.decide_send(s, number=None, credit_available=0)] == ["invoice.sent"]


def test_partial_then_full_payment():
    s, facts = pay(pending(1000), 400)
    received = facts[0][1]
    assert (received.is_partial, received.is_fully_paid, received.amount_due) == (True, False, 600)
    assert s.status == "PARTIALLY_PAID"
    s, facts = pay(s, 600, "pay_2")
    assert [t for t, _ in facts] == ["invoice.payment_received", "invoice.paid"]
    assert facts[0][1].is_fully_paid and s.status == "PAID" and s.amount_due == 0


def test_the_same_payment_twice_changes_nothing():
    s, _ = pay(pending(1000), 400)
    assert inv.decide_payment(s, payment_id="pay_1", amount=400, method="card") == []


def test_overpayment_is_reported_for_customer_credit():
    s, facts = pay(pending(1000), 1500)
    assert facts[0][1].applied == 1000 and facts[0][1].overpayment == 500 and s.status == "PAID"


def test_partial_offline_payment_refused_when_not_allowed():
    with pytest.raises(Conflict) as err:
        inv.decide_payment(pending(1000, partial=False), payment_id="p", amount=10, method="cash", offline=True)
    assert err.value.code == "partial_payment_not_allowed"


def test_offline_payment_of_exactly_the_amount_due_accepted_when_partial_not_allowed():
    s, facts = pay(pending(1000, partial=False), 1000, offline=True)
    assert [t for t, _ in facts] == ["invoice.payment_received", "invoice.paid"]
    assert (s.status, s.amount_due) == ("PAID", 0)


@pytest.mark.parametrize("action", ["void", "write_off", "offline_payment"])
def test_drafts_refuse_what_needs_a_finalized_invoice(action):
    s = draft(100)
    with pytest.raises(Conflict) as err:
        {
            "void": lambda: inv.decide_void(s, None),
            "write_off": lambda: inv.decide_write_off(s, "cn_1"),
            "offline_payment": lambda: inv.decide_payment(s, payment_id="p", amount=1, method="cash", offline=True),
        }[action]()
    assert err.value.code == "invoice_draft"


def test_void_only_without_payments_and_returns_credits():
    s = apply(draft(1000), inv.decide_finalize(draft(1000), number="INV-1", credit_available=300))
    assert s.credits_applied == 300 and s.amount_due == 700
    facts = inv.decide_void(s, "duplicate")
    assert facts[0][1].credits_returned == 300
    voided = apply(s, facts)
    assert (voided.status, voided.amount_due) == ("VOID", 0)
    paid_some, _ = pay(s, 100)
    with pytest.raises(Conflict) as err:
        inv.decide_void(paid_some, None)
    assert err.value.code == "invoice_has_payments"
    with pytest.raises(Conflict):
        inv.decide_void(voided, None)


def test_partial_credit_at_finalize_is_partially_paid():
    s = draft(1000)
    s = apply(s, inv.decide_finalize(s, number="INV-1", credit_available=300))
    assert (s.status, s.amount_paid, s.credits_applied, s.amount_due) == ("PARTIALLY_PAID", 0, 300, 700)


def test_write_off_closes_the_balance():
    s, _ = pay(pending(1000), 250)
    s = apply(s, inv.decide_write_off(s, "cn_1"))
    assert (s.status, s.write_off_amount, s.amount_due) == ("WRITTEN_OFF", 750, 0)
    assert s.amount_paid + s.write_off_amount == s.totals.total


def credit(s: inv.Invoice, amount: int, cn: str = "cn_1") -> inv.Invoice:
    facts = inv.decide_adjust(s, credit_note_id=cn, amount=amount, reason_code="order_change")
    note = ev.CreditNoteCreated(credit_note={"id": cn, "type": "adjustment", "status": "adjusted"})
    return apply(s, [*facts, ("credit_note.created", note)])


def test_a_credit_note_lowers_what_is_due_and_voiding_it_brings_it_back():
    s = credit(pending(1000), 300)
    assert (s.status, s.amount_adjusted, s.amount_due) == ("PENDING", 300, 700)
    s = apply(s, inv.decide_void_credit_note(s, "cn_1"))
    assert (s.status, s.amount_adjusted, s.amount_due, s.adjustments) == ("PENDING", 0, 1000, {})
    s = apply(s, [("credit_note.voided", ev.CreditNoteVoided(credit_note={"id": "cn_1", "status": "voided"}))])
    with pytest.raises(Conflict) as err:
        inv.decide_void_credit_note(s, "cn_1")
    assert err.value.code == "credit_note_voided"


def test_a_credit_note_for_all_that_is_due_pays_the_invoice_and_then_stays():
    s, _ = pay(pending(1000), 400)
    facts = inv.decide_adjust(s, credit_note_id="cn_1", amount=600, reason_code="waiver")
    assert [t for t, _ in facts] == ["invoice.adjusted", "invoice.paid"]
    s = credit(s, 600)
    assert (s.status, s.amount_due) == ("PAID", 0)
    with pytest.raises(Conflict) as err:  # it is part of how the invoice closed
        inv.decide_void_credit_note(s, "cn_1")
    assert err.value.code == "invoice_paid"


@pytest.mark.parametrize(
    ("amount", "reason_code", "code"),
    [(0, "waiver", "amount_invalid"), (1001, "waiver", "amount_invalid"), (10, "write_off", "reason_code_invalid")],
)
def test_credit_notes_refuse_more_than_is_due_and_unknown_reasons(amount, reason_code, code):
    with pytest.raises(Refused) as err:
        inv.decide_adjust(pending(1000), credit_note_id="cn_1", amount=amount, reason_code=reason_code)
    assert err.value.code == code
    with pytest.raises(Conflict) as err:  # a draft owes nothing yet
        inv.decide_adjust(draft(1000), credit_note_id="cn_1", amount=10, reason_code="waiver")
    assert err.value.code == "invoice_draft"


def test_only_credit_notes_made_by_hand_are_voided():
    s = pending(1000)
    s = apply(s, inv.decide_write_off(s, "cn_w"))
    note = ev.CreditNoteCreated(credit_note={"id": "cn_w", "type": "adjustment", "status": "adjusted"})
    s = apply(s, [("credit_note.created", note)])
    with pytest.raises(Conflict) as err:
        inv.decide_void_credit_note(s, "cn_w")
    assert err.value.code == "credit_note_not_voidable"


def test_delete_only_drafts():
    s = draft(100)
    assert apply(s, inv.decide_delete(s)).exists is False
    with pytest.raises(Conflict):
        inv.decide_delete(pending(100))


def test_credits_covering_the_total_pay_at_finalize():
    s = draft(500)
    facts = inv.decide_finalize(s, number="INV-1", credit_available=800)
    assert [t for t, _ in facts] == ["invoice.finalized", "invoice.paid"] and facts[0][1].credits_applied == 500
    assert apply(s, facts).status == "PAID"


def test_dunning_outcomes_and_status_precedence():
    s = pending(1000)
    s = apply(s, inv.decide_overdue(s, date(2026, 12, 1)))
    assert s.status == "OVERDUE" and inv.decide_overdue(s, date(2026, 12, 1)) == []
    s = apply(s, inv.decide_payment_failed(s, payment_id="p", reason_code="card_declined", reason=None, attempt=1))
    assert s.status == "FAILED"
    s = apply(s, inv.decide_dunning_exhausted(s, "mark_uncollectible"))
    assert s.status == "UNCOLLECTIBLE"
    s, _ = pay(s, 1000, "late")
    assert s.status == "PAID"
    assert inv.decide_overdue(s, date(2026, 12, 1)) == []  # paid: nothing to record
    assert inv.decide_dunning_exhausted(pending(10), "leave_open") == []
    assert [t for t, _ in inv.decide_dunning_exhausted(pending(10), "void")] == ["invoice.voided"]


def test_overdue_timer_for_an_older_due_date_is_ignored():
    s = pending(100)
    assert inv.decide_overdue(s, date(2026, 11, 1)) == []  # due date moved to 2026-12-01


def test_import_records_a_historical_invoice():
    s = inv.Invoice(id="inv_1")
    s = apply(
        s,
        inv.decide_import(
            s, fields=fields(1000), number="OLD-17", issued_on=date(2024, 1, 5), status="PAID", amount_paid=0
        ),
    )
    assert (s.status, s.number, s.amount_paid, s.issued_on) == ("PAID", "OLD-17", 1000, date(2024, 1, 5))
    with pytest.raises(Refused):
        inv.decide_import(
            inv.Invoice(id="x"),
            fields=fields(1000),
            number="N",
            issued_on=date(2024, 1, 1),
            status="DRAFT",
            amount_paid=0,
        )


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (dict(items=[]), "items"),
        (dict(items=[ev.LineData(description="x", quantity=0, unit_amount=1)]), "items.0.quantity"),
        (dict(discount=ev.DiscountData(percent=5, amount=5)), "discount"),
    ],
)
def test_invalid_drafts_name_the_field(bad, field):
    with pytest.raises(Refused) as err:
        inv.decide_create(inv.Invoice(id="x"), fields(100).model_copy(update=bad))
    assert err.value.field == field


@given(st.lists(st.integers(1, 5000), min_size=1, max_size=8), st.integers(0, 3000), st.booleans())
def test_balance_invariant_holds_through_any_payments(payments, credit, write_off):
    s = draft(2500, 1500)
    s = apply(s, inv.decide_finalize(s, number="INV-1", credit_available=credit))
    for i, amount in enumerate(payments):
        if s.status not in inv.OPEN:
            break
        s, _ = pay(s, amount, f"pay_{i}")
    if write_off and s.status in inv.OPEN:
        s = apply(s, inv.decide_write_off(s, "cn"))
    assert s.amount_paid + s.credits_applied + s.write_off_amount + s.amount_due == s.totals.total
    assert s.amount_due >= 0 and (s.status == "PAID") == (s.amount_due == 0 and s.status not in ("WRITTEN_OFF",))


operations = st.one_of(
    st.tuples(st.just("pay"), st.integers(1, 5000), st.integers(0, 5)),  # a few ids: redeliveries
    st.tuples(st.just("refund"), st.integers(1, 5000), st.just(0)),
    st.tuples(st.just("void"), st.just(0), st.just(0)),
    st.tuples(st.just("write_off"), st.just(0), st.just(0)),
    st.tuples(st.just("adjust"), st.integers(1, 5000), st.just(0)),
    st.tuples(st.just("void_note"), st.just(0), st.just(0)),
)


@given(st.integers(0, 6000), st.lists(operations, max_size=12), st.randoms(use_true_random=False))
def test_balance_holds_through_credit_payments_refunds_voids_and_any_order(credit, ops, rnd):
    """Credit up to more than the whole invoice (4000), then payments (redelivered too), refunds,
    credit notes made and voided, a void or a write-off in any order: after every step the money
    adds up, and the same payments in another order leave the same balance."""
    s = draft(2500, 1500)
    s = apply(s, inv.decide_finalize(s, number="INV-1", credit_available=credit))
    assert s.credits_applied == min(credit, 4000) and (s.status == "PAID") == (credit >= 4000)
    received: dict[str, int] = {}  # payment id -> amount, as first received
    for op, amount, n in ops:
        before = s
        try:
            if op == "pay":
                facts = inv.decide_payment(s, payment_id=f"pay_{n}", amount=amount, method="card")
                if f"pay_{n}" in received:
                    assert facts == []  # redelivered: changes nothing
                for _, fact in facts:
                    if isinstance(fact, ev.PaymentReceived):
                        assert fact.applied + fact.overpayment == amount and fact.applied == min(
                            amount, before.amount_due
                        )
                        received[f"pay_{n}"] = amount
            elif op == "refund":
                amount = min(amount, s.amount_paid - s.amount_refunded)  # payments never refunds more
                if amount <= 0:
                    continue
                facts = inv.decide_refund(
                    s, payment_id="pay_0", refund_id=f"re_{len(ops)}", amount=amount, credit_note_id="cn"
                )
            elif op == "void":
                facts = inv.decide_void(s, "test")
            elif op == "adjust":
                cn = f"cn_{len(s.credit_notes)}"
                facts = inv.decide_adjust(s, credit_note_id=cn, amount=amount, reason_code="waiver")
                facts.append(
                    ("credit_note.created", ev.CreditNoteCreated(credit_note={"id": cn, "status": "adjusted"}))
                )
            elif op == "void_note":
                if not s.adjustments:
                    continue
                facts = inv.decide_void_credit_note(s, next(iter(s.adjustments)))
            else:
                facts = inv.decide_write_off(s, "cn")
        except (Conflict, Refused):
            continue  # refused in this state (voiding a paid invoice, crediting more than is due)
        s = apply(s, facts)
        if op == "refund":  # money back to the customer: the invoice's own balance is untouched
            assert (s.amount_paid, s.amount_due, s.status) == (before.amount_paid, before.amount_due, before.status)
            assert s.amount_refunded == before.amount_refunded + amount
        if s.status == "VOID":
            assert (s.amount_due, s.amount_paid, s.credits_applied) == (0, 0, 0)  # credit goes back
        else:
            paid_or_forgiven = s.amount_paid + s.credits_applied + s.write_off_amount + s.amount_adjusted
            assert paid_or_forgiven + s.amount_due == 4000
        if op == "adjust":
            assert s.amount_due == before.amount_due - amount
        if op == "void_note":
            assert s.amount_due == before.amount_due + before.adjustments[next(iter(before.adjustments))]
        assert s.amount_due >= 0
        assert (s.status == "PAID") == (s.amount_due == 0 and s.status not in ("VOID", "WRITTEN_OFF"))

    # The same payments, delivered in another order, apply the same total.
    if all(op == "pay" for op, _, _ in ops):
        order = list(received.items())
        rnd.shuffle(order)
        t = draft(2500, 1500)
        t = apply(t, inv.decide_finalize(t, number="INV-1", credit_available=credit))
        for pid, amount in order:
            t, _ = pay(t, amount, pid)
        assert (t.amount_paid, t.amount_due, t.status) == (s.amount_paid, s.amount_due, s.status)


def test_customer_credit_balance_per_currency():
    c = cust.Customer(id="cust_1")
    c = cust.fold(
        [("customer.created", ev.CustomerCreated(fields=ev.CustomerFields(name="Jane", currency="UGX")), T0)], "cust_1"
    )
    for t, f in cust.decide_add_credit(c, 500, "UGX", invoice_id="inv_1", reason="overpayment"):
        c = cust.evolve(c, t, f, subject="cust_1", at=T0 + timedelta(minutes=1))
    assert c.credit == {"UGX": 500}
    for t, f in cust.decide_apply_credit(c, 200, "UGX", "inv_2"):
        c = cust.evolve(c, t, f, subject="cust_1", at=T0)
    assert c.credit == {"UGX": 300}
    with pytest.raises(ValueError):
        cust.decide_apply_credit(c, 301, "UGX", "inv_3")
    with pytest.raises(Refused):
        cust.decide_create(cust.Customer(), ev.CustomerFields(name=None))


def test_tenant_creation_and_key_revocation():
    events = decide_create_tenant(" Acme ", NewKey("key_1", "h", "sk_test_abcd", "test"))
    assert [t for t, _ in events] == ["tenant.created", "api_key.created"]
    assert events[0][1].name == "Acme"
    assert [t for t, _ in decide_revoke_key({"key_1"}, set(), "key_1")] == ["api_key.revoked"]
    assert decide_revoke_key({"key_1"}, {"key_1"}, "key_1") == []
    with pytest.raises(ValueError):
        decide_revoke_key({"key_1"}, set(), "key_2")
    with pytest.raises(ValueError):
        decide_create_tenant("  ", NewKey("k", "h", "p", "test"))


def test_v1_created_event_is_upcast():
    from shared.envelope import CloudEvent

    old = CloudEvent.new(
        type="invoice.created",
        source="/t",
        subject="inv_9",
        tenant_id="t",
        version=1,
        data={
            "invoiceId": "inv_9",
            "customerId": "cust_9",
            "currency": "USD",
            "dueDate": "2026-12-31",
            "items": [{"description": "Pro", "quantity": 2, "unitAmount": 100, "amount": 200}],
            "subtotal": 200,
            "total": 200,
            "amountDue": 200,
            "status": "DRAFT",
            "metadata": {},
        },
    )
    loaded = ev.registry.load(old)
    assert isinstance(loaded, ev.InvoiceCreated) and loaded.fields.customer.id == "cust_9"
    assert inv.fold([("invoice.created", loaded, T0)], "inv_9").totals.total == 200


def test_folding_from_stored_json_keeps_fields_an_update_did_not_change():
    """Update events are stored with every field (nulls included); only `changes` apply."""
    from shared.envelope import CloudEvent

    s = draft(1000)
    facts = inv.decide_update(s, ev.DraftFields(notes="hello"))
    history = []
    for event_type, fact in [*inv.decide_create(inv.Invoice(id="inv_1"), fields(1000)), *facts]:
        envelope = ev.registry.new_event(event_type, fact, source="/t", subject="inv_1", tenant_id="t")
        stored = CloudEvent.model_validate_json(envelope.to_json())
        history.append((stored.type, ev.registry.load(stored), T0))
    folded = inv.fold(history, "inv_1")
    assert folded.fields.notes == "hello" and folded.fields.customer.id == "cust_1" and folded.totals.total == 1000
