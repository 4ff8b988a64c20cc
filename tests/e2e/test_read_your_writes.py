"""Read what you wrote, through the :3000 origin: a list or search right after an acknowledged
write shows it, every time. Each write updates the service's own read model in its transaction
(shared/projections.py, apply_inline); before that, a list right after `finalize` missed the
invoice in 36 of 40 tries."""

import asyncio
import uuid

import pytest

from tests.conftest import days_from_today, eventually
from tests.e2e.conftest import ok, tenant_client

ROUNDS = 30
SUCCEEDS = "4242424242424242"  # the sandbox's test card that succeeds


@pytest.fixture(scope="module")
def api(gateway):
    with tenant_client(gateway, "Read Your Writes") as client:
        yield client


def listed(api, path: str, **params) -> dict[str, dict]:
    return {row["id"]: row for row in ok(api.get(path, params={"limit": 100, **params}))["data"]}


def customer(api, **kw) -> dict:
    email = f"ryw.{uuid.uuid4().hex[:8]}@example.com"
    return ok(api.post("/api/customers", json={"name": "Read Writes", "email": email, "currency": "UGX", **kw}), 201)


def draft(api, cust: dict, amount: int = 50000) -> dict:
    items = [{"description": "Plan", "quantity": 1, "unitAmount": amount}]
    body = {"customerId": cust["id"], "items": items, "dueDate": days_from_today(30)}
    return ok(api.post("/api/invoices", json=body), 201)


def test_customer_list_and_search_show_a_customer_at_once(api):
    for _ in range(ROUNDS):
        c = customer(api)
        assert c["id"] in listed(api, "/api/customers")
        assert c["id"] in listed(api, "/api/customers", search=c["email"])
        renamed = ok(api.patch(f"/api/customers/{c['id']}", json={"name": f"Renamed {c['id']}"}))
        assert listed(api, "/api/customers", search=c["email"])[c["id"]]["name"] == renamed["name"]


def test_invoice_list_shows_each_step_at_once(api):
    cust = customer(api)
    for _ in range(ROUNDS):
        inv = draft(api, cust)
        assert listed(api, "/api/invoices", customerId=cust["id"])[inv["id"]]["status"] == "DRAFT"
        finalized = ok(api.post(f"/api/invoices/{inv['id']}/finalize"))
        rows = listed(api, "/api/invoices", customerId=cust["id"], status="PENDING")
        assert rows[inv["id"]]["number"] == finalized["number"]
        assert inv["id"] in listed(api, "/api/invoices", search=finalized["number"])
        ok(api.post(f"/api/invoices/{inv['id']}/void"))
        assert listed(api, "/api/invoices", customerId=cust["id"])[inv["id"]]["status"] == "VOID"


def test_a_deleted_draft_leaves_the_list_at_once_and_stays_gone(api):
    cust = customer(api)
    for _ in range(ROUNDS):
        inv = draft(api, cust)
        assert inv["id"] in listed(api, "/api/invoices", customerId=cust["id"])
        assert api.delete(f"/api/invoices/{inv['id']}").status_code in (200, 204)
        assert inv["id"] not in listed(api, "/api/invoices", customerId=cust["id"])
    # The runner applies the same events again later: none of them brings a deleted row back.
    assert listed(api, "/api/invoices", customerId=cust["id"]) == {}


def test_credit_note_list_shows_a_write_off_at_once(api):
    cust = customer(api)
    for _ in range(ROUNDS):
        inv = draft(api, cust)
        ok(api.post(f"/api/invoices/{inv['id']}/finalize"))
        ok(api.post(f"/api/invoices/{inv['id']}/write-off", json={"reason": "bad debt"}))
        notes = list(listed(api, "/api/credit-notes", invoiceId=inv["id"]).values())
        assert [(n["invoiceId"], n["amount"]) for n in notes] == [(inv["id"], inv["total"])]


def test_payment_list_shows_a_collected_payment_at_once(api):
    cust = customer(api)
    ok(api.post("/api/payment-methods", json={"customerId": cust["id"], "type": "card", "number": SUCCEEDS}), 201)
    for _ in range(ROUNDS // 3):  # each round charges the sandbox and waits for the invoice to reach payments
        inv = draft(api, cust)
        ok(api.post(f"/api/invoices/{inv['id']}/finalize"))
        payment = ok(api.post(f"/api/invoices/{inv['id']}/collect"), 201)
        rows = listed(api, "/api/payments", invoiceId=inv["id"])
        # As the call answered, or settled since by the sandbox's callback: never missing, never older.
        assert rows[payment["id"]]["status"] in (payment["status"], "SUCCEEDED")
        assert payment["id"] in listed(api, f"/api/customers/{cust['id']}/payments")

    async def succeeded():  # the sandbox's callback settles the charge
        return ok(api.get(f"/api/payments/{payment['id']}"))["status"] == "SUCCEEDED"

    asyncio.run(eventually(succeeded))
    # A refund names no reason (NovaBilling's is optional); the list shows it at once.
    refund = api.post(f"/api/payments/{payment['id']}/refund", json={})
    assert refund.status_code == 201, refund.text
    assert refund.json()["reason"] == "requested by the merchant"
    assert listed(api, "/api/payments", invoiceId=inv["id"])[payment["id"]]["status"] == "REFUNDED"


def test_webhook_endpoint_list_shows_an_endpoint_at_once(api):
    for i in range(ROUNDS):
        endpoint = ok(
            api.post(
                "/api/webhook-endpoints",
                json={"url": f"http://127.0.0.1:9/ryw/{i}", "enabledEvents": ["invoice.created"]},
            ),
            201,
        )
        assert endpoint["id"] in listed(api, "/api/webhook-endpoints")
        assert api.delete(f"/api/webhook-endpoints/{endpoint['id']}").status_code in (200, 204)
        assert endpoint["id"] not in listed(api, "/api/webhook-endpoints")
