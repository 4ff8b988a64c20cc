"""Provider callbacks are trusted only as far as the account that signed them: a callback changes
only a payment charged through the very account whose secret verified it, each account has its
own callback path (one secret tried per request), and provider event ids are deduplicated per
account. A real payments process, Stripe spoken by a local server (tests/support/payments_fakes.py)."""

import json

import httpx

from services.payments.providers import signing
from tests.conftest import eventually
from tests.support.payments_fakes import FakeStripe, stripe_and_payments, stripe_event  # noqa: F401 - fixture
from tests.support.payments_server import invoice

SANDBOX_SECRET = "whsec_sandbox_local"  # the installation's development sandbox secret, public


async def add_stripe(client: httpx.AsyncClient, fake: FakeStripe, webhook_secret: str, currency: str = "USD") -> str:
    r = await client.post(
        "/api/payment-providers",
        json={
            "provider": "stripe",
            "currencies": [currency],
            "credentials": {"secretKey": fake.secret_key, "webhookSecret": webhook_secret},
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def declined_payment(server, tenant: str, client: httpx.AsyncClient, currency: str = "USD") -> dict:
    """A payment whose charge failed: a forged `succeeded` callback would turn it into a paid invoice."""
    customer = f"cust_{currency.lower()}"
    await client.post(
        "/api/payment-methods",
        json={"customerId": customer, "provider": "stripe", "token": "cus_1:pm_card_chargeDeclined"},
    )
    inv = invoice(customer_id=customer, currency=currency, total=12500)
    await server.publish_invoice(tenant, "invoice.finalized", inv)
    await eventually(lambda: server.fetch("SELECT 1 FROM payable_invoices WHERE invoice_id = $1", inv["id"]))
    payment = (await client.post(f"/api/invoices/{inv['id']}/collect")).json()
    assert payment["status"] == "FAILED", payment
    return payment


def stripe_succeeded(payment: dict, event_id: str | None = None) -> bytes:
    body = json.loads(
        stripe_event(
            "payment_intent.succeeded",
            {"id": payment["providerReference"], "object": "payment_intent", "metadata": {"payment_id": payment["id"]}},
        )
    )
    if event_id:
        body["id"] = event_id
    return json.dumps(body).encode()


def sandbox_succeeded(payment_id: str, event_id: str) -> bytes:
    return json.dumps(
        {"id": event_id, "type": "charge.succeeded", "data": {"charge": {"id": "ch_forged", "reference": payment_id}}}
    ).encode()


async def status(client: httpx.AsyncClient, payment_id: str) -> str:
    return (await client.get(f"/api/payments/{payment_id}")).json()["status"]


async def test_the_installation_sandbox_secret_cannot_settle_a_stripe_payment(stripe_and_payments):
    fake, server = stripe_and_payments
    tenant, client = await server.tenant()
    await add_stripe(client, fake, "whsec_acme")
    payment = await declined_payment(server, tenant, client)
    async with httpx.AsyncClient(base_url=server.url) as raw:
        for n, path in enumerate(("/webhooks/sandbox", "/webhooks/sandbox/default")):
            forged = sandbox_succeeded(payment["id"], f"evt_forged_{n}")
            r = await raw.post(
                path, content=forged, headers={"sandbox-signature": signing.sign(SANDBOX_SECRET, forged)}
            )
            assert r.status_code == 200 and r.json() == {"received": True, "ignored": True}, (path, r.text)
    assert await status(client, payment["id"]) == "FAILED"
    assert "provider callback for a payment not charged through this account ignored" in server.log_path.read_text()


async def test_a_callback_changes_only_payments_of_the_account_that_verified_it(stripe_and_payments):
    fake, server = stripe_and_payments
    tenant, client = await server.tenant()
    r = await client.post("/api/payment-providers", json={"provider": "stripe", "credentials": {"secretKey": "sk_x"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "credentials_invalid", r.text
    assert r.json()["error"]["field"] == "credentials.webhookSecret"
    usd = await add_stripe(client, fake, "whsec_usd", "USD")
    eur = await add_stripe(client, fake, "whsec_eur", "EUR")  # the same tenant's other account
    payment = await declined_payment(server, tenant, client, "USD")
    async with httpx.AsyncClient(base_url=server.url) as raw:

        async def post(path: str, secret: str, body: bytes) -> httpx.Response:
            return await raw.post(path, content=body, headers={"Stripe-Signature": signing.sign(secret, body)})

        # Two Stripe accounts: the bare path cannot tell whose secret to try.
        r = await post("/webhooks/stripe", "whsec_eur", stripe_succeeded(payment))
        assert r.status_code == 400 and r.json()["error"]["code"] == "callback_account_required", r.text
        # The EUR account's secret verifies on its own path, but the payment went through USD.
        r = await post(f"/webhooks/stripe/{eur}", "whsec_eur", stripe_succeeded(payment))
        assert r.status_code == 200 and r.json() == {"received": True, "ignored": True}, r.text
        # One secret per path: the EUR secret on the USD path, or an unknown account, verifies nothing.
        for path in (f"/webhooks/stripe/{usd}", "/webhooks/stripe/pacct_nosuch", f"/webhooks/paystack/{eur}"):
            r = await post(path, "whsec_eur", stripe_succeeded(payment))
            assert r.status_code == 400 and r.json()["error"]["code"] == "signature_invalid", (path, r.text)
        assert await status(client, payment["id"]) == "FAILED"

        # The account that made the charge is believed.
        r = await post(f"/webhooks/stripe/{usd}", "whsec_usd", stripe_succeeded(payment))
        assert r.status_code == 200 and r.json() == {"received": True}, r.text
    assert await status(client, payment["id"]) == "SUCCEEDED"


async def test_provider_event_ids_are_deduplicated_per_account(stripe_and_payments):
    fake, server = stripe_and_payments
    tenant, client = await server.tenant("Acme Ltd")
    _, other_client = await server.tenant("Mallory Ltd")
    acme = await add_stripe(client, fake, "whsec_acme")
    mallory = await add_stripe(other_client, fake, "whsec_mallory")
    payment = await declined_payment(server, tenant, client)
    async with httpx.AsyncClient(base_url=server.url) as raw:

        async def post(account: str, secret: str) -> dict:
            body = stripe_succeeded(payment, event_id="evt_shared")
            r = await raw.post(
                f"/webhooks/stripe/{account}", content=body, headers={"Stripe-Signature": signing.sign(secret, body)}
            )
            assert r.status_code == 200, r.text
            return r.json()

        # Another account sending the same event id first must not make the real one a "duplicate".
        assert await post(mallory, "whsec_mallory") == {"received": True, "ignored": True}
        assert await post(acme, "whsec_acme") == {"received": True}
        assert await post(acme, "whsec_acme") == {"received": True, "duplicate": True}
    assert await status(client, payment["id"]) == "SUCCEEDED"
    rows = await server.fetch(
        "SELECT account_id FROM provider_events WHERE event_id = 'evt_shared' ORDER BY received_at"
    )
    assert [r["account_id"] for r in rows] == [mallory, acme]


async def test_charges_name_their_account_in_the_callback_url_and_settle_through_it(stripe_and_payments):
    _, server = stripe_and_payments
    tenant, client = await server.tenant()
    await client.post(
        "/api/payment-methods", json={"customerId": "cust_1", "type": "card", "number": "4242424242424242"}
    )

    async def collect() -> dict:
        inv = invoice()
        await server.publish_invoice(tenant, "invoice.finalized", inv)
        await eventually(lambda: server.fetch("SELECT 1 FROM payable_invoices WHERE invoice_id = $1", inv["id"]))
        payment = (await client.post(f"/api/invoices/{inv['id']}/collect")).json()

        async def settled_by_callbacks():  # both of the sandbox's callbacks answered 2xx at that URL
            rows = await server.fetch(
                """SELECT url FROM sandbox_callbacks
                   WHERE delivered_at IS NOT NULL AND convert_from(body, 'UTF8') LIKE '%' || $1 || '%'""",
                payment["id"],
            )
            return rows if len(rows) == 2 else None

        [first, _] = await eventually(settled_by_callbacks)
        assert await status(client, payment["id"]) == "SUCCEEDED"
        return {**payment, "callbackUrl": first["url"]}

    # The installation's sandbox has a stable path of its own.
    assert (await collect())["callbackUrl"] == f"{server.url}/webhooks/sandbox/default"
    # A tenant's own sandbox account: its charges call back on its path.
    r = await client.post("/api/payment-providers", json={"provider": "sandbox", "currencies": ["UGX"]})
    assert r.status_code == 201, r.text
    account = r.json()["id"]
    payment = await collect()
    assert payment["callbackUrl"] == f"{server.url}/webhooks/sandbox/{account}"
    charged = await server.fetch("SELECT account_id FROM charge_jobs WHERE payment_id = $1", payment["id"])
    assert charged[0]["account_id"] == account

    async with httpx.AsyncClient(base_url=server.url) as raw:
        forged = sandbox_succeeded(payment["id"], "evt_other")
        headers = {"sandbox-signature": signing.sign(SANDBOX_SECRET, forged)}
        # The installation's sandbox and the tenant's sandbox account are two sandbox accounts.
        r = await raw.post("/webhooks/sandbox", content=forged, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == "callback_account_required"
        r = await raw.post("/webhooks/sandbox/default", content=forged, headers=headers)
        assert r.json() == {"received": True, "ignored": True}  # not charged through the default account


async def test_the_migration_credits_existing_events_to_their_account(database, tmp_path):
    import shutil
    from pathlib import Path

    import asyncpg

    from shared.db import migrate

    migrations = Path(__file__).resolve().parents[2] / "services" / "payments" / "migrations"
    before = tmp_path / "migrations"
    before.mkdir()
    for f in migrations.glob("200[1-5]_*.sql"):  # the schema as it was before the account column
        shutil.copy(f, before)
    await migrate(database, before)
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("""INSERT INTO charge_jobs (payment_id, tenant_id, account_id, idempotency_key) VALUES
                              ('pay_a', 'ten_1', 'pacct_a', 'k_a'), ('pay_s', 'ten_1', NULL, 'k_s')""")
        await conn.execute("""INSERT INTO provider_events (provider, event_id, payment_id) VALUES
                              ('stripe', 'evt_1', 'pay_a'), ('sandbox', 'evt_2', 'pay_s'), ('paystack', 'evt_3', NULL)""")
        assert "2006_provider_events_account" in await migrate(database, migrations)
        await conn.execute(
            (migrations / "2006_provider_events_account.sql").read_text()
        )  # a second run changes nothing
        rows = await conn.fetch("SELECT event_id, account_id FROM provider_events ORDER BY event_id")
        assert [tuple(r) for r in rows] == [("evt_1", "pacct_a"), ("evt_2", "default:sandbox"), ("evt_3", "")]
        insert = """INSERT INTO provider_events (provider, account_id, event_id) VALUES ('stripe', $1, 'evt_1')
                    ON CONFLICT DO NOTHING RETURNING true"""
        assert await conn.fetchval(insert, "pacct_a") is None  # still a duplicate after the upgrade
        assert await conn.fetchval(insert, "pacct_b") is True  # another account's event of the same id
    finally:
        await conn.close()
