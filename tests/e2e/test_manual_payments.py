"""Offline payments are payments, through the :3000 origin: mark-paid and record-payment create a
`manual` payment that the payment list shows once the call answered; refunding one records money
given back outside Billstream (amountRefunded, a refund credit note, payment.refunded); and an
invoice-level refund takes the amount from the invoice's payments, newest first."""

import asyncio
import uuid

import pytest

from tests.conftest import days_from_today, eventually
from tests.e2e.conftest import ok, tenant_client

ROUNDS = 10


@pytest.fixture(scope="module")
def api(gateway):
    with tenant_client(gateway, "Manual Payments") as client:
        yield client


def open_invoice(api, *amounts: int, partial: bool = False) -> dict:
    email = f"manual.{uuid.uuid4().hex[:8]}@example.com"
    customer = ok(api.post("/api/customers", json={"name": "Cash Payer", "email": email, "currency": "UGX"}), 201)
    items = [{"description": f"Item {i}", "quantity": 1, "unitAmount": a} for i, a in enumerate(amounts)]
    body = {"customerId": customer["id"], "items": items, "dueDate": days_from_today(30)}
    draft = ok(api.post("/api/invoices", json={**body, "allowPartialPayments": partial}), 201)
    return ok(api.post(f"/api/invoices/{draft['id']}/finalize"))


def payments_of(api, invoice_id: str) -> dict[str, dict]:
    return {p["id"]: p for p in ok(api.get("/api/payments", params={"invoiceId": invoice_id}))["data"]}


def test_mark_paid_creates_a_manual_payment_the_list_shows_at_once(api):
    for _ in range(ROUNDS):
        inv = open_invoice(api, 25000)
        paid = ok(
            api.post(
                f"/api/invoices/{inv['id']}/mark-paid",
                json={"paymentMethod": "bank_transfer", "reference": "TX-77", "date": "2026-11-30"},
            )
        )
        assert paid["status"] == "PAID" and paid["paymentId"].startswith("pay_")
        payment = payments_of(api, inv["id"])[paid["paymentId"]]  # no waiting: the call answered after it
        assert {k: payment[k] for k in ("status", "provider", "method", "providerReference", "paidOn", "amount")} == {
            "status": "SUCCEEDED",
            "provider": "manual",
            "method": "bank_transfer",
            "providerReference": "TX-77",
            "paidOn": "2026-11-30",
            "amount": 25000,
        }
        assert ok(api.get(f"/api/payments/{paid['paymentId']}"))["invoiceId"] == inv["id"]


def test_record_payment_in_parts_makes_one_payment_per_part(api):
    inv = open_invoice(api, 10000, partial=True)
    first = ok(api.post(f"/api/invoices/{inv['id']}/record-payment", json={"amount": 4000, "method": "cash"}))
    assert first["status"] == "PARTIALLY_PAID"
    second = ok(api.post(f"/api/invoices/{inv['id']}/record-payment", json={"method": "check"}))
    assert second["status"] == "PAID" and second["paymentId"] != first["paymentId"]
    listed = payments_of(api, inv["id"])
    assert {pid: (p["amount"], p["method"]) for pid, p in listed.items()} == {
        first["paymentId"]: (4000, "cash"),
        second["paymentId"]: (6000, "check"),
    }


def test_refunding_a_manual_payment_records_money_given_back(api):
    inv = open_invoice(api, 30000)
    paid = ok(api.post(f"/api/invoices/{inv['id']}/mark-paid", json={"method": "cash"}))
    refund = ok(
        api.post(f"/api/payments/{paid['paymentId']}/refund", json={"amount": 12000, "reason": "returned"}), 201
    )
    assert (refund["status"], refund["amount"], refund["payment"]["status"]) == (
        "succeeded",
        12000,
        "PARTIALLY_REFUNDED",
    )
    assert payments_of(api, inv["id"])[paid["paymentId"]]["amountRefunded"] == 12000

    async def refunded():  # invoicing hears payment.refunded over Kafka
        invoice = ok(api.get(f"/api/invoices/{inv['id']}"))
        return invoice if invoice["amountRefunded"] == 12000 else None

    asyncio.run(eventually(refunded))
    notes = ok(api.get("/api/credit-notes", params={"invoiceId": inv["id"]}))["data"]
    assert [(n["type"], n["amount"]) for n in notes] == [("refund", 12000)]
    history = [e["type"] for e in ok(api.get(f"/api/invoices/{inv['id']}/events"))["data"]]
    assert history[-2:] == ["invoice.refunded", "credit_note.created"], history
    over = api.post(f"/api/payments/{paid['paymentId']}/refund", json={"amount": 18001})
    assert over.status_code == 400 and over.json()["error"]["code"] == "refund_exceeds_payment"


def test_an_invoice_refund_takes_from_its_payments_newest_first(api):
    inv = open_invoice(api, 10000, partial=True)
    older = ok(api.post(f"/api/invoices/{inv['id']}/record-payment", json={"amount": 3000}))["paymentId"]
    newer = ok(api.post(f"/api/invoices/{inv['id']}/record-payment", json={"amount": 7000}))["paymentId"]
    too_much = api.post(f"/api/invoices/{inv['id']}/refund", json={"amount": 10001})
    assert too_much.status_code == 400 and too_much.json()["error"]["code"] == "refund_exceeds_payments"
    refund = ok(api.post(f"/api/invoices/{inv['id']}/refund", json={"amount": 8000}), 201)
    assert refund["amount"] == 8000 and [(r["paymentId"], r["amount"]) for r in refund["refunds"]] == [
        (newer, 7000),
        (older, 1000),
    ]
    listed = payments_of(api, inv["id"])
    assert (listed[newer]["status"], listed[older]["status"]) == ("REFUNDED", "PARTIALLY_REFUNDED")
    rest = ok(api.post(f"/api/invoices/{inv['id']}/refund", json={}), 201)  # all that is left
    assert [(r["paymentId"], r["amount"]) for r in rest["refunds"]] == [(older, 2000)]
    nothing = api.post(f"/api/invoices/{inv['id']}/refund", json={})
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "invoice_not_refundable"


def test_checkout_takes_a_callback_url_names_the_provider_and_refuses_a_paid_or_void_invoice(api):
    inv = open_invoice(api, 5000)
    checkout = ok(
        api.post(f"/api/invoices/{inv['id']}/checkout", json={"callbackUrl": "https://shop.example/done"}), 201
    )
    assert (checkout["returnUrl"], checkout["provider"]) == ("https://shop.example/done", "sandbox")
    ok(api.post(f"/api/invoices/{inv['id']}/mark-paid"))
    paid = api.post(f"/api/invoices/{inv['id']}/checkout", json={})  # payments heard of it before mark-paid answered
    assert paid.status_code == 409 and paid.json()["error"]["code"] == "invoice_not_payable", paid.text

    void = open_invoice(api, 5000)
    ok(api.post(f"/api/invoices/{void['id']}/void"))

    async def refused():  # payments hears invoice.voided over Kafka
        r = api.post(f"/api/invoices/{void['id']}/checkout", json={})
        return r if r.status_code == 409 else None

    assert asyncio.run(eventually(refused)).json()["error"]["code"] == "invoice_not_payable"


def test_an_overpayment_is_credit_not_payment_and_keeps_the_customer(api):
    inv = open_invoice(api, 10000)
    paid = ok(api.post(f"/api/invoices/{inv['id']}/mark-paid", json={"amount": 15000, "method": "cash"}))
    assert paid["status"] == "PAID"
    # The 5,000 beyond the amount due is the customer's credit; the payment is what paid the invoice.
    assert payments_of(api, inv["id"])[paid["paymentId"]]["amount"] == 10000
    customer = ok(api.get(f"/api/customers/{inv['customer']['id']}"))
    assert customer["creditBalance"] == 5000
    too_much = api.post(f"/api/payments/{paid['paymentId']}/refund", json={"amount": 10001})
    assert too_much.status_code == 400 and too_much.json()["error"]["code"] == "refund_exceeds_payment"
    held = api.delete(f"/api/customers/{customer['id']}")
    assert held.status_code == 409 and held.json()["error"]["code"] == "customer_has_credit", held.text
