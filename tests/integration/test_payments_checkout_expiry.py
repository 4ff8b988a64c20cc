"""One-off payments sent on to a provider's hosted form (a Stripe Checkout Session, a Paystack
page), through a running payments process against the local Stripe and Paystack servers: each
ends paid or as payment.failed `expired` by its deadline, never PROCESSING for ever holding the
invoice's balance; and a retry Stripe refuses for its key is never recorded as a decline."""

import httpx
import pytest

from services.payments.providers import signing
from tests.conftest import eventually
from tests.integration.test_payments_flows import open_invoice, payment_events, settled
from tests.support.payments_fakes import FakePaystack, FakeStripe, LocalServer, stripe_event
from tests.support.payments_server import start_payments_server, stop_payments_server

WHSEC = "whsec_test_stripe"


@pytest.fixture
async def providers(database, kafka):
    """`start(**settings)`: a payments process using the local Stripe and Paystack, and a tenant
    with an account at each (USD, NGN): the server, the tenant's world id and its client."""
    stripe_fake, paystack_fake = FakeStripe(), FakePaystack()
    servers = []
    async with LocalServer(stripe_fake.app) as stripe_server, LocalServer(paystack_fake.app) as paystack_server:

        async def start(**settings: str):
            server = await start_payments_server(
                database, kafka, STRIPE_API_BASE=stripe_server.url, PAYSTACK_API_BASE=paystack_server.url, **settings
            )
            servers.append(server)
            world, client = await server.tenant("Hosted Ltd")
            for account in (
                {
                    "provider": "stripe",
                    "currencies": ["USD"],
                    "credentials": {"secretKey": stripe_fake.secret_key, "webhookSecret": WHSEC},
                },
                {"provider": "paystack", "currencies": ["NGN"], "credentials": {"secretKey": paystack_fake.secret_key}},
            ):
                assert (await client.post("/api/payment-providers", json=account)).status_code == 201
            return server, world, client

        try:
            yield stripe_fake, paystack_fake, start
        finally:
            for server in servers:
                await stop_payments_server(server)


async def go_to_provider(server, world: str, client, currency: str) -> tuple[str, str]:
    """A customer opens a new invoice's checkout link and is sent on to the provider's form: the
    link and the payment's id."""
    inv = await open_invoice(server, world, currency=currency, total=5000)
    link = (await client.post(f"/api/invoices/{inv['id']}/checkout", json={})).json()["checkoutUrl"]
    async with httpx.AsyncClient() as browser:
        r = await browser.post(link, data={})
    assert r.status_code == 303 and "checkout." in r.headers["location"], r.text
    [row] = await server.fetch("SELECT payment_id FROM invoice_payments WHERE invoice_id = $1", inv["id"])
    return link, row["payment_id"]


async def test_hosted_checkouts_end_paid_or_expired_by_their_deadline(providers):
    stripe_fake, _, start = providers
    server, world, client = await start(HOSTED_CHECKOUT_EXPIRY_S="4")
    abandoned_link, abandoned = await go_to_provider(server, world, client, "USD")  # left on Stripe's form
    _, paid = await go_to_provider(server, world, client, "USD")  # paid there; Stripe's callback never comes
    _, told = await go_to_provider(server, world, client, "USD")  # Stripe calls back: the session expired
    _, left_paystack = await go_to_provider(server, world, client, "NGN")  # left on Paystack's page
    session = {
        pid: (await server.fetch("SELECT provider_reference FROM charge_jobs WHERE payment_id = $1", pid))[0][
            "provider_reference"
        ]
        for pid in (abandoned, paid, told)
    }
    intent = stripe_fake.pay_session(session[paid])

    # Stripe takes no session shorter than 30 minutes: ours asks for that, and our own deadline
    # (4 s here) still ends the payment on time.
    [job] = await server.fetch("SELECT created_at FROM charge_jobs WHERE payment_id = $1", abandoned)
    asked = stripe_fake.sessions[session[abandoned]]["expires_at"] - job["created_at"].timestamp()
    assert 1800 < asked < 1900, asked

    body = stripe_event(
        "checkout.session.expired",
        {"id": session[told], "object": "checkout.session", "metadata": {"payment_id": told}},
    )
    async with httpx.AsyncClient(base_url=server.url) as raw:
        r = await raw.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": signing.sign(WHSEC, body)})
    assert r.json() == {"received": True}
    now = (await client.get(f"/api/payments/{told}")).json()
    assert (now["status"], now["failureCode"]) == ("FAILED", "expired")

    # By the deadline each is settled, looked up through the object it was made with.
    ended = {pid: await settled(client, pid, timeout=15) for pid in (abandoned, paid, left_paystack)}
    assert (ended[paid]["status"], ended[paid]["providerReference"]) == ("SUCCEEDED", intent["id"])
    for pid in (abandoned, left_paystack):
        assert (ended[pid]["status"], ended[pid]["failureCode"]) == ("FAILED", "expired"), ended[pid]
    assert ("GET", f"/v1/checkout/sessions/{session[paid]}") in [r[:2] for r in stripe_fake.requests]
    assert not [path for _, path, _ in stripe_fake.requests if path.startswith("/v1/payment_intents/cs_")]
    events = await payment_events(server, at_least=12)  # created, processing and the end of each
    failed = {e["subject"]: e["data"]["reasonCode"] for e in events if e["type"] == "payment.failed"}
    assert failed == {abandoned: "expired", told: "expired", left_paystack: "expired"}

    # The paid one refunds through its PaymentIntent; an expired one no longer holds the balance.
    r = await client.post(f"/api/payments/{paid}/refund", json={"reason": "Changed mind"})
    assert r.status_code == 201, r.text
    async with httpx.AsyncClient() as browser:
        again = await browser.post(abandoned_link, data={})
    assert again.status_code == 303 and again.headers["location"].startswith("https://checkout.stripe.test/"), (
        again.text
    )


async def test_a_retry_stripe_refuses_for_its_key_stays_pending_then_expires(providers):
    """The first session request times out (Stripe answers after 5 s, we wait 1 s); retries while it
    still runs get 409; the invoice's e-mail changes meanwhile, so the next retry sends other
    parameters under the same key and Stripe refuses it (400 idempotency_error). That is no
    decline: the payment stays pending until its deadline, then ends `expired`."""
    stripe_fake, _, start = providers
    server, world, client = await start(HOSTED_CHECKOUT_EXPIRY_S="10", PROVIDER_TIMEOUT_S="1")
    inv = await open_invoice(server, world, currency="USD", total=5000)
    link = (await client.post(f"/api/invoices/{inv['id']}/checkout", json={})).json()["checkoutUrl"]
    stripe_fake.session_delay = 5.0
    async with httpx.AsyncClient() as browser:
        r = await browser.post(link, data={})
    assert r.status_code == 303 and "/payments/pay_" in r.headers["location"]  # our status page: no answer yet
    payment_id = r.headers["location"].rsplit("/", 1)[1]
    moved = {**inv, "customer": {**inv["customer"], "email": "new@example.com"}}
    await server.publish_invoice(world, "invoice.updated", moved)

    async def refused():
        [job] = await server.fetch("SELECT last_error FROM charge_jobs WHERE payment_id = $1", payment_id)
        return "same parameters" in (job["last_error"] or "")

    await eventually(refused, timeout=20)
    assert (await client.get(f"/api/payments/{payment_id}")).json()["status"] == "PENDING"
    assert len(stripe_fake.sessions) == 1

    ended = await settled(client, payment_id, timeout=30)
    assert (ended["status"], ended["failureCode"]) == ("FAILED", "expired"), ended
    events = await payment_events(server, at_least=2)
    assert [e["data"]["reasonCode"] for e in events if e["type"] == "payment.failed"] == ["expired"]
