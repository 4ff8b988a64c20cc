"""A real payment through the running stack, no made-up events: invoicing publishes the invoice,
payments charges the sandbox's test card (automatic collection, or the customer on the hosted
page), and the payment's events turn the invoice PAID in invoicing and settle it in dunning."""

import re
import uuid

import asyncpg
import httpx
import pytest

from deploy.local.demo import create_tenant, wait_until_key_active
from tests.conftest import days_from_today, eventually
from tests.e2e.conftest import service_dsn

SUCCEEDS = "4242424242424242"  # the sandbox's test card that succeeds


@pytest.fixture(scope="module")
def tenant(gateway):
    # A tenant of this module's own: nothing here can touch another test's invoices, or theirs ours.
    t = create_tenant(f"Round Trip {uuid.uuid4().hex[:6]}")
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {t['apiKey']}"}, timeout=30) as c:
        wait_until_key_active(c)
    return t


@pytest.fixture
async def api(gateway, tenant):
    async with httpx.AsyncClient(
        base_url=gateway, headers={"Authorization": f"Bearer {tenant['apiKey']}"}, timeout=30
    ) as c:
        yield c


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


async def draft(api, customer: dict, amount: int, **kw) -> dict:
    return ok(
        await api.post(
            "/api/invoices",
            json={
                "customerId": customer["id"],
                "dueDate": days_from_today(30),
                "items": [{"description": "Pro Plan - Monthly", "quantity": 1, "unitAmount": amount}],
                **kw,
            },
        ),
        201,
    )


async def settles_everywhere(api, invoice_id: str, amount: int) -> dict:
    """The invoice PAID in invoicing, dunning's view settled, and the payment listed."""

    async def paid():
        got = ok(await api.get(f"/api/invoices/{invoice_id}"))
        return got if got["status"] == "PAID" else None

    invoice = await eventually(paid, timeout=60, interval=0.3)
    assert (invoice["amountPaid"], invoice["amountDue"]) == (amount, 0)

    async def dunning_heard_it():  # dunning's own record of the invoice, fed by Kafka
        conn = await asyncpg.connect(service_dsn("dunning"))
        try:
            row = await conn.fetchrow(
                "SELECT status, amount_due, paid_in_full FROM invoice_schedule WHERE invoice_id = $1", invoice_id
            )
        finally:
            await conn.close()
        # invoice.paid settles it. paid_in_full is set only when payment.succeeded (another topic)
        # comes first, while an amount is still due, so it depends on the order and is not waited for.
        return row if row and row["status"] == "PAID" else None

    row = await eventually(dunning_heard_it, timeout=60, interval=0.3)
    assert row["amount_due"] == 0
    # ...and its view: nothing to collect, no retry, no due-date timer left to fire.
    dunning = ok(await api.get(f"/api/invoices/{invoice_id}/dunning"))
    assert dunning["status"] in ("SUCCESS", None) and dunning["nextRetryAt"] is None, dunning
    assert dunning["upcoming"] == [] and dunning["overdue"] is False, dunning

    async def listed():
        body = ok(await api.get("/api/payments", params={"invoiceId": invoice_id}))
        return body["data"] if body["data"] and body["data"][0]["status"] == "SUCCEEDED" else None

    [payment] = await eventually(listed, timeout=60, interval=0.3)
    assert (payment["amount"], payment["invoiceId"], payment["provider"]) == (amount, invoice_id, "sandbox")
    return {"invoice": invoice, "dunning": dunning, "payment": payment}


async def test_auto_collection_charges_the_saved_card_and_the_invoice_turns_paid_everywhere(api):
    customer = ok(
        await api.post(
            "/api/customers",
            json={"name": "Auto Payer", "email": f"auto.{uuid.uuid4().hex[:8]}@example.com", "currency": "UGX"},
        ),
        201,
    )
    ok(
        await api.post("/api/payment-methods", json={"customerId": customer["id"], "type": "card", "number": SUCCEEDS}),
        201,
    )
    invoice = await draft(api, customer, 180000, autoCollection=True)
    ok(await api.post(f"/api/invoices/{invoice['id']}/finalize"))

    seen = await settles_everywhere(api, invoice["id"], 180000)
    assert seen["payment"]["automatic"] is True
    # The invoice's own history shows the payment that paid it, as invoicing heard it over Kafka.
    history = [e["type"] for e in ok(await api.get(f"/api/invoices/{invoice['id']}/events"))["data"]]
    assert history[-1] == "invoice.paid" and "invoice.payment_received" in history, history


async def test_hosted_checkout_paid_with_the_test_card_turns_the_invoice_paid_everywhere(api, gateway):
    customer = ok(
        await api.post(
            "/api/customers",
            json={"name": "Page Payer", "email": f"page.{uuid.uuid4().hex[:8]}@example.com", "currency": "UGX"},
        ),
        201,
    )
    invoice = ok(await api.post(f"/api/invoices/{(await draft(api, customer, 95000))['id']}/finalize"))
    checkout = ok(await api.post(f"/api/invoices/{invoice['id']}/checkout", json={}), 201)
    url = checkout["checkoutUrl"]
    path = url[url.index("/pay/") :]
    async with httpx.AsyncClient(base_url=gateway, timeout=30, follow_redirects=False) as browser:
        page = await browser.get(path)
        assert page.status_code == 200 and invoice["number"] in page.text
        paid = await browser.post(path, data={"method": "card", "card_number": SUCCEEDS})
        assert paid.status_code in (200, 303), paid.text
        assert re.search(r"/pay/", paid.headers.get("location", path))

    seen = await settles_everywhere(api, invoice["id"], 95000)
    assert seen["payment"]["automatic"] is False
