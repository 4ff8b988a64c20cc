"""Test mode and live mode in payments (docs/security.md): a key sees only its own mode's
objects, every resource says which mode it is in, and the sandbox serves test mode only, so a
live invoice with no provider of its own cannot be paid, never through the sandbox."""

import asyncpg
import httpx

from services.payments.app.routing import SANDBOX_DEFAULT, Account
from services.payments.app.webhooks_in import _charged_through
from services.payments.providers.base import CallbackEvent
from services.payments.settings import DEV_CREDENTIALS_KEY
from shared import paylinks
from shared.auth import tenant_of, world
from shared.vault import Vault
from tests.conftest import eventually
from tests.support.payments_fakes import stripe_and_payments  # noqa: F401 - fixture
from tests.support.payments_server import invoice, payments_server  # noqa: F401 - fixture

SUCCEEDS = "4242424242424242"


async def open_invoice(server, world_id: str, **kw) -> dict:
    inv = invoice(**kw)
    await server.publish_invoice(world_id, "invoice.finalized", inv)
    await eventually(lambda: server.fetch("SELECT 1 FROM payable_invoices WHERE invoice_id = $1", inv["id"]))
    return inv


def code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


async def test_a_live_invoice_without_a_provider_is_not_paid_through_the_sandbox(payments_server):
    server = payments_server
    live, client = await server.tenant("Live Only Ltd", mode="live")
    inv = await open_invoice(server, live, currency="USD", total=2500)
    r = await client.post(f"/api/invoices/{inv['id']}/checkout", json={})
    assert code(r) == (409, "no_provider"), r.text
    await client.post(
        "/api/payment-methods", json={"customerId": "cust_1", "provider": "stripe", "token": "cus_1:pm_card_visa"}
    )
    r = await client.post(f"/api/invoices/{inv['id']}/collect")
    assert code(r) == (409, "no_provider"), r.text

    # A sandbox account and card saved before the modes existed (so live rows) are not used either.
    vault = Vault(DEV_CREDENTIALS_KEY)
    await server.fetch(
        """INSERT INTO provider_accounts (account_id, tenant_id, provider, credentials)
                          VALUES ('pacct_old', $1, 'sandbox', $2)""",
        live,
        vault.encrypt({}),
    )
    await server.fetch(
        """INSERT INTO payment_methods (method_id, tenant_id, customer_id, provider, type, label, token)
                          VALUES ('pm_old', $1, 'cust_old', 'sandbox', 'card', 'old card', $2)""",
        live,
        vault.encrypt("tok_old"),
    )
    old = await open_invoice(server, live, customer_id="cust_old", currency="UGX")
    r = await client.post(f"/api/invoices/{old['id']}/collect")
    assert code(r) == (409, "no_provider"), r.text
    assert await server.fetch("SELECT 1 FROM charge_jobs") == []

    # The customer's e-mailed pay link says it cannot be paid online, and offers no form.
    async with httpx.AsyncClient(base_url=server.url, follow_redirects=True) as browser:
        page = await browser.get(paylinks.path(paylinks.DEV_SECRET, inv["id"]))
    assert page.status_code == 200 and "Online payment is not available" in page.text, page.text
    assert 'id="pay-form"' not in page.text

    # The same tenant's test world pays through the sandbox.
    test_client = await server.client(live, "test")
    test_inv = await open_invoice(server, world(live, "test"), currency="USD", total=2500)
    r = await test_client.post(f"/api/invoices/{test_inv['id']}/checkout", json={})
    assert r.status_code == 201 and r.json()["livemode"] is False, r.text


async def test_the_sandbox_is_refused_in_live_mode(payments_server):
    server = payments_server
    test_world, test_client = await server.tenant()
    live_client = await server.client(test_world, "live")
    r = await live_client.post("/api/payment-providers", json={"provider": "sandbox", "currencies": ["UGX"]})
    assert code(r) == (400, "sandbox_test_mode_only") and r.json()["error"]["field"] == "provider", r.text
    r = await live_client.post("/api/payment-methods", json={"customerId": "cust_1", "number": SUCCEEDS})
    assert code(r) == (400, "sandbox_test_mode_only"), r.text
    assert await server.fetch("SELECT 1 FROM provider_accounts UNION ALL SELECT 1 FROM payment_methods") == []

    r = await test_client.post("/api/payment-providers", json={"provider": "sandbox", "currencies": ["UGX"]})
    assert r.status_code == 201 and r.json()["livemode"] is False, r.text


async def test_each_key_sees_only_its_modes_objects_and_each_says_its_mode(stripe_and_payments):
    fake, server = stripe_and_payments
    test_world, test_client = await server.tenant()
    live_world, live_client = tenant_of(test_world), await server.client(test_world, "live")

    r = await live_client.post(
        "/api/payment-providers",
        json={
            "provider": "stripe",
            "currencies": ["USD"],
            "credentials": {"secretKey": fake.secret_key, "webhookSecret": "whsec_live"},
        },
    )
    assert r.status_code == 201 and r.json()["livemode"] is True, r.text
    r = await live_client.post(
        "/api/payment-methods", json={"customerId": "cust_1", "provider": "stripe", "token": "cus_1:pm_card_visa"}
    )
    assert r.status_code == 201 and r.json()["livemode"] is True, r.text
    r = await test_client.post("/api/payment-methods", json={"customerId": "cust_1", "number": SUCCEEDS})
    assert r.status_code == 201 and r.json()["livemode"] is False, r.text

    live_inv = await open_invoice(server, live_world, currency="USD", total=10000)
    test_inv = await open_invoice(server, test_world, currency="USD", total=10000)
    r = await live_client.post(f"/api/invoices/{live_inv['id']}/checkout", json={})
    assert r.status_code == 201 and r.json()["livemode"] is True, r.text
    live_pay = (await live_client.post(f"/api/invoices/{live_inv['id']}/collect")).json()
    assert (live_pay["status"], live_pay["provider"], live_pay["livemode"]) == ("SUCCEEDED", "stripe", True)
    test_pay = (await test_client.post(f"/api/invoices/{test_inv['id']}/collect")).json()
    assert (test_pay["provider"], test_pay["livemode"]) == ("sandbox", False), test_pay

    # Neither key sees, refunds or checks out the other mode's objects.
    for client, other_pay, other_inv in ((test_client, live_pay, live_inv), (live_client, test_pay, test_inv)):
        assert code(await client.get(f"/api/payments/{other_pay['id']}")) == (404, "resource_missing")
        r = await client.post(f"/api/payments/{other_pay['id']}/refund", json={"reason": "x"})
        assert r.status_code == 404
        r = await client.post(f"/api/invoices/{other_inv['id']}/checkout", json={})
        assert r.status_code == 404
    for client, mine, live in ((test_client, test_pay, False), (live_client, live_pay, True)):

        async def listed(client=client):
            data = (await client.get("/api/payments")).json()["data"]
            return data if data else None

        assert [(p["id"], p["livemode"]) for p in await eventually(listed)] == [(mine["id"], live)]
        assert (await client.get(f"/api/payments/{mine['id']}")).json()["livemode"] is live
        methods = (await client.get("/api/payment-methods", params={"customerId": "cust_1"})).json()["data"]
        assert [m["livemode"] for m in methods] == [live]
    assert (await test_client.get("/api/payment-providers")).json()["data"] == []
    assert [p["livemode"] for p in (await live_client.get("/api/payment-providers")).json()["data"]] == [True]

    r = await live_client.post(f"/api/payments/{live_pay['id']}/refund", json={"amount": 2500, "reason": "Damaged"})
    assert r.status_code == 201 and (r.json()["livemode"], r.json()["payment"]["livemode"]) == (True, True), r.text
    await eventually(lambda: _succeeded(test_client, test_pay["id"]))
    r = await test_client.post(f"/api/payments/{test_pay['id']}/refund", json={"reason": "Test"})
    assert r.status_code == 201 and (r.json()["livemode"], r.json()["payment"]["livemode"]) == (False, False), r.text


async def _succeeded(client: httpx.AsyncClient, payment_id: str) -> bool:
    return (await client.get(f"/api/payments/{payment_id}")).json()["status"] == "SUCCEEDED"


async def test_the_installation_sandbox_never_settles_a_live_payment(database):
    """A live payment charged through the sandbox before the modes existed: its callbacks are ignored."""
    from pathlib import Path

    from shared.db import migrate

    await migrate(database, Path(__file__).resolve().parents[2] / "services" / "payments" / "migrations")
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("""INSERT INTO charge_jobs (payment_id, tenant_id, account_id, idempotency_key) VALUES
                              ('pay_live', 'ten_1', NULL, 'k_l'), ('pay_test', 'ten_1_test', NULL, 'k_t')""")
        sandbox = Account(SANDBOX_DEFAULT, "sandbox")
        for payment_id, settles in (("pay_test", True), ("pay_live", False)):
            event = CallbackEvent("evt_1", payment_id, "ch_1", "succeeded")
            assert await _charged_through(conn, event, sandbox) is settles
    finally:
        await conn.close()
