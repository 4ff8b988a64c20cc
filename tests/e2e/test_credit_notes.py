"""Credit notes made by hand, through :3000: an adjustment lowers what an invoice asks for (and
payments charges the lower amount), voiding it asks for the amount again, and the list filters
on who, what and why, showing each write at once."""

import asyncio
import uuid

import pytest

from tests.conftest import days_from_today, eventually
from tests.e2e.conftest import ok, tenant_client

ROUNDS = 10


@pytest.fixture(scope="module")
def api(gateway):
    with tenant_client(gateway, "Credit Notes") as client:
        yield client


def open_invoice(api, amount: int = 50000) -> dict:
    email = f"cn.{uuid.uuid4().hex[:8]}@example.com"
    cust = ok(api.post("/api/customers", json={"name": "Credited", "email": email, "currency": "UGX"}), 201)
    items = [{"description": "Plan", "quantity": 1, "unitAmount": amount}]
    body = {"customerId": cust["id"], "items": items, "dueDate": days_from_today(30)}
    inv = ok(api.post("/api/invoices", json=body), 201)
    return ok(api.post(f"/api/invoices/{inv['id']}/finalize"))


def credit(api, invoice_id: str, amount: int, reason_code: str = "waiver", **kw):
    body = {"invoiceId": invoice_id, "amount": amount, "reasonCode": reason_code, **kw}
    return api.post("/api/credit-notes", json=body)


def notes(api, **params) -> dict[str, dict]:
    return {n["id"]: n for n in ok(api.get("/api/credit-notes", params={"limit": 100, **params}))["data"]}


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["code"]


def test_a_credit_note_lowers_the_amount_due_and_voiding_it_raises_it_again(api):
    for _ in range(ROUNDS):
        inv = open_invoice(api)
        note = ok(credit(api, inv["id"], 20000, reason="goodwill for the late delivery"), 201)
        assert note["number"].startswith("CN-") and note["invoiceId"] == inv["id"]
        assert (note["type"], note["status"], note["reasonCode"], note["amount"], note["currency"]) == (
            "adjustment",
            "adjusted",
            "waiver",
            20000,
            "UGX",
        )
        after = ok(api.get(f"/api/invoices/{inv['id']}"))
        assert (after["status"], after["amountAdjusted"], after["amountDue"]) == ("PENDING", 20000, 30000)
        # The list, by each filter, shows the note at once.
        for params in (
            {"invoiceId": inv["id"]},
            {"customerId": inv["customerId"], "status": "adjusted"},
            {"customerId": inv["customerId"], "reasonCode": "waiver", "type": "adjustment"},
        ):
            assert notes(api, **params).keys() == {note["id"]}, params
        assert ok(api.get(f"/api/credit-notes/{note['id']}")) == note

        voided = ok(api.post(f"/api/credit-notes/{note['id']}/void"))
        assert (voided["status"], voided["amount"]) == ("voided", 20000) and voided["voidedAt"]
        after = ok(api.get(f"/api/invoices/{inv['id']}"))
        assert (after["amountAdjusted"], after["amountDue"]) == (0, 50000)
        assert notes(api, customerId=inv["customerId"], status="voided").keys() == {note["id"]}
        assert notes(api, customerId=inv["customerId"], status="adjusted") == {}
        assert error_of(api.post(f"/api/credit-notes/{note['id']}/void"), 409) == "credit_note_voided"


def test_payments_charge_what_is_left_after_a_credit_note(api):
    inv = open_invoice(api, 50000)
    ok(credit(api, inv["id"], 12000, "service_unsatisfactory"), 201)

    async def lowered():  # payments hears invoice.adjusted over Kafka
        checkout = ok(api.post(f"/api/invoices/{inv['id']}/checkout", json={}), 201)
        return checkout if checkout["amountDue"] == 38000 else None

    assert asyncio.run(eventually(lowered))["amountDue"] == 38000


def test_a_credit_note_for_all_that_is_due_pays_the_invoice_for_good(api):
    inv = open_invoice(api, 50000)
    ok(api.post(f"/api/invoices/{inv['id']}/record-payment", json={"amount": 10000, "method": "cash"}))
    note = ok(credit(api, inv["id"], 40000, "order_cancellation"), 201)
    after = ok(api.get(f"/api/invoices/{inv['id']}"))
    assert (after["status"], after["amountPaid"], after["amountAdjusted"], after["amountDue"]) == (
        "PAID",
        10000,
        40000,
        0,
    )
    assert error_of(api.post(f"/api/credit-notes/{note['id']}/void"), 409) == "invoice_paid"
    assert error_of(credit(api, inv["id"], 1), 409) == "invoice_paid"


def test_notes_a_write_off_or_a_refund_made_are_not_voided(api):
    inv = open_invoice(api, 50000)
    ok(api.post(f"/api/invoices/{inv['id']}/write-off", json={"reason": "bad debt"}))
    [note] = notes(api, invoiceId=inv["id"]).values()
    assert (note["type"], note["status"], note["reasonCode"]) == ("adjustment", "adjusted", "write_off")
    assert error_of(api.post(f"/api/credit-notes/{note['id']}/void"), 409) == "credit_note_not_voidable"


def test_bad_credit_notes_are_refused_with_the_field_named(api):
    inv = open_invoice(api, 50000)
    assert error_of(credit(api, inv["id"], 50001), 400) == "amount_invalid"
    assert error_of(credit(api, "inv_nothing", 100), 400) == "invoice_not_found"
    bad_reason = credit(api, inv["id"], 100, "write_off")  # write-offs make their own notes
    assert bad_reason.status_code == 400 and bad_reason.json()["error"]["field"] == "reasonCode", bad_reason.text
    items = [{"description": "Later", "quantity": 1, "unitAmount": 100}]
    draft = ok(api.post("/api/invoices", json={"customerId": inv["customerId"], "items": items}), 201)
    assert error_of(credit(api, draft["id"], 100), 409) == "invoice_draft"
    assert error_of(api.get("/api/credit-notes", params={"status": "spent"}), 400) == "parameter_invalid"
    assert error_of(api.post("/api/credit-notes/cn_nothing/void"), 404) == "resource_missing"
    assert ok(api.get(f"/api/invoices/{inv['id']}"))["amountDue"] == 50000  # nothing was taken off
