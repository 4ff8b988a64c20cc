"""ZevPay's way of invoicing, through :3000: an invoice created for a customer given inline
({name, email}) finds the tenant's customer with that e-mail or makes one, and a finalized
invoice carries a lasting paymentUrl that opens its hosted page, also once it is paid."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import days_from_today
from tests.e2e.conftest import ok, tenant_client

ITEMS = [{"description": "Website", "quantity": 1, "unitAmount": 35000}]


@pytest.fixture(scope="module")
def api(gateway):
    with tenant_client(gateway, "Inline Customers") as client:
        yield client


def invoice_for(api, customer: dict) -> httpx.Response:
    return api.post("/api/invoices", json={"customer": customer, "items": ITEMS, "dueDate": days_from_today(30)})


def customers_with(api, email: str) -> list[dict]:
    return ok(api.get("/api/customers", params={"email": email}))["data"]


def test_an_inline_customer_is_found_by_email_or_made(api):
    email = f"chidi.{uuid.uuid4().hex[:8]}@example.com"
    first = ok(invoice_for(api, {"name": "Chidi Okonkwo", "email": email.upper()}), 201)
    [made] = customers_with(api, email)
    assert (first["customerId"], made["name"], made["email"]) == (made["id"], "Chidi Okonkwo", email)
    assert first["customer"] == {"id": made["id"], "name": "Chidi Okonkwo", "email": email}
    again = ok(invoice_for(api, {"name": "Chidi O. Okonkwo", "email": email}), 201)
    assert again["customerId"] == made["id"]  # the customer on record, as it is
    assert [c["id"] for c in customers_with(api, email)] == [made["id"]]


def test_requests_naming_one_new_email_at_once_make_one_customer(api):
    email = f"rush.{uuid.uuid4().hex[:8]}@example.com"
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda i: invoice_for(api, {"name": f"Rush {i}", "email": email}), range(8)))
    owners = {ok(r, 201)["customerId"] for r in made}
    assert len(owners) == 1 and [c["id"] for c in customers_with(api, email)] == list(owners)


def test_an_invoice_names_one_customer_one_way(api):
    email = f"both.{uuid.uuid4().hex[:8]}@example.com"
    cust = ok(api.post("/api/customers", json={"name": "Both", "email": email}), 201)
    for body in ({"customerId": cust["id"], "customer": {"name": "Both", "email": email}}, {}):
        r = api.post("/api/invoices", json={**body, "items": ITEMS})
        assert r.status_code == 400 and r.json()["error"]["code"] == "customer_required", r.text
    r = invoice_for(api, {"name": "No Mail"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "customer.email", r.text
    assert customers_with(api, email) == [cust]


def test_a_finalized_invoice_has_a_lasting_payment_url_that_opens_its_page(api, gateway):
    draft = ok(invoice_for(api, {"name": "Payer", "email": f"payer.{uuid.uuid4().hex[:8]}@example.com"}), 201)
    assert draft["paymentUrl"] is None  # nothing to pay yet
    inv = ok(api.post(f"/api/invoices/{draft['id']}/finalize"))
    url = inv["paymentUrl"]
    assert url.startswith(f"{gateway}/pay/invoice/{inv['id']}?sig="), url
    assert ok(api.get(f"/api/invoices/{inv['id']}"))["paymentUrl"] == url
    [row] = ok(api.get("/api/invoices", params={"customerId": inv["customerId"]}))["data"]
    assert row["paymentUrl"] == url
    with httpx.Client(follow_redirects=True, timeout=30) as browser:  # no API key: the customer's browser
        page = browser.get(url)
        assert page.status_code == 200 and inv["number"] in page.text, page.text[:500]
        assert browser.get(url.replace("?sig=", "?sig=x")).status_code == 404
        ok(api.post(f"/api/invoices/{inv['id']}/mark-paid"))
        assert ok(api.get(f"/api/invoices/{inv['id']}"))["paymentUrl"] == url  # the same link, now a receipt
        receipt = browser.get(url)
        assert receipt.status_code == 200 and inv["number"] in receipt.text
