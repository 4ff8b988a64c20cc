"""The Stripe and Paystack adapters over real HTTP against local servers that speak those APIs,
and both wired through a running payments process (provider accounts with encrypted
credentials, routing by currency, charges, signed webhooks, refunds)."""

import asyncio
import json
import time
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest

from services.payments.providers import signing
from services.payments.providers.base import (
    ChargeRequest,
    KeyAlreadyUsed,
    ProviderError,
    ProviderUnavailable,
    SignatureInvalid,
)
from services.payments.providers.paystack import PaystackProvider
from services.payments.providers.stripe_adapter import StripeProvider
from tests.conftest import eventually
from tests.support.payments_fakes import (
    FakePaystack,
    FakeStripe,
    LocalServer,
    charge_request,
    paystack_signature,
    stripe_event,
)
from tests.support.payments_server import invoice, start_payments_server, stop_payments_server

WHSEC = "whsec_test_stripe"


async def test_stripe_adapter_charges_once_per_key_declines_refunds_and_checks_signatures():
    fake = FakeStripe()
    async with LocalServer(fake.app) as server:
        stripe_ = StripeProvider(fake.secret_key, WHSEC, api_base=server.url, timeout=3.0)
        result = await stripe_.charge_saved_method(charge_request("pay_1", "cus_1:pm_card_visa"))
        assert result.status == "succeeded" and result.provider_reference.startswith("pi_")
        again = await stripe_.charge_saved_method(charge_request("pay_1", "cus_1:pm_card_visa"))
        assert again.provider_reference == result.provider_reference and len(fake.intents) == 1
        assert all(key == "billstream_pay_1" for _, path, key in fake.requests if path == "/v1/payment_intents")

        # A timeout; a retry while Stripe still works on the first request is 409 (unavailable, retried,
        # never a decline); once it is done the same key hands back the same intent.
        with pytest.raises(ProviderUnavailable):
            await stripe_.charge_saved_method(charge_request("pay_slow", "pm_card_slow"))
        with pytest.raises(ProviderUnavailable, match="in-progress"):
            await stripe_.charge_saved_method(charge_request("pay_slow", "pm_card_slow"))
        await asyncio.sleep(3.5)  # the slow answer (6 s) has come and gone
        retried = await stripe_.charge_saved_method(charge_request("pay_slow", "pm_card_slow"))
        assert retried.status == "succeeded"
        assert sum(i["payment_method"] == "pm_card_slow" for i in fake.intents.values()) == 1

        declined = await stripe_.charge_saved_method(charge_request("pay_2", "pm_card_chargeDeclined"))
        assert (declined.status, declined.failure_code) == ("failed", "generic_decline")

        refund = await stripe_.refund("rf_1", result.provider_reference, 2000, "USD")
        assert refund.status == "succeeded"
        assert (
            await stripe_.refund("rf_1", result.provider_reference, 2000, "USD")
        ).provider_reference == refund.provider_reference
        with pytest.raises(ProviderError):
            await stripe_.refund("rf_2", result.provider_reference, 3001, "USD")
        assert (await stripe_.get_status(result.provider_reference)).status == "succeeded"

        hosted = await stripe_.start_payment(
            ChargeRequest("billstream_pay_3", "pay_3", 5000, "USD", "http://cb", return_url="http://shop/back")
        )
        assert hosted.status == "requires_action" and hosted.redirect_url.startswith("https://checkout.stripe.test/")

        body = stripe_event(
            "payment_intent.succeeded",
            {"id": result.provider_reference, "object": "payment_intent", "metadata": {"payment_id": "pay_1"}},
        )
        event = stripe_.verify_callback({"stripe-signature": signing.sign(WHSEC, body)}, body)
        assert (event.payment_id, event.status, event.provider_reference) == (
            "pay_1",
            "succeeded",
            result.provider_reference,
        )
        with pytest.raises(SignatureInvalid):
            stripe_.verify_callback({"stripe-signature": signing.sign("whsec_wrong", body)}, body)

        bad_key = StripeProvider("sk_test_wrong", WHSEC, api_base=server.url)
        with pytest.raises(ProviderError):
            await bad_key.charge_saved_method(charge_request("pay_9", "pm_card_visa"))


async def test_stripe_retry_refused_for_its_key_is_looked_up_and_never_a_decline():
    """Stripe refuses a retry whose parameters differ from the first request's (400
    `idempotency_error`). The adapter then finds the first request's PaymentIntent by our payment
    id; with none to find (a hosted session nobody has paid) the refusal is KeyAlreadyUsed, which
    the worker retries, never the ProviderError it would record as a decline."""
    fake = FakeStripe()
    async with LocalServer(fake.app) as server:
        stripe_ = StripeProvider(fake.secret_key, WHSEC, api_base=server.url, timeout=3.0)
        first = await stripe_.charge_saved_method(charge_request("pay_1", "pm_card_visa"))
        changed = await stripe_.charge_saved_method(charge_request("pay_1", "pm_card_visa", amount=5100))
        assert (changed.status, changed.provider_reference) == ("succeeded", first.provider_reference)
        await stripe_.charge_saved_method(charge_request("pay_2", "pm_card_chargeDeclined"))
        declined = await stripe_.charge_saved_method(charge_request("pay_2", "pm_card_chargeDeclined", amount=1))
        assert (declined.status, declined.failure_code) == ("failed", "generic_decline")  # a real decline stays one
        assert len(fake.intents) == 2

        hosted = ChargeRequest(
            "billstream_pay_3",
            "pay_3",
            5000,
            "USD",
            "http://cb",
            customer_email="a@example.com",
            return_url="http://shop/back",
        )
        session = await stripe_.start_payment(hosted)
        moved = replace(hosted, customer_email="b@example.com")  # the invoice's e-mail changed meanwhile
        with pytest.raises(KeyAlreadyUsed):
            await stripe_.start_payment(moved)
        intent = fake.pay_session(session.provider_reference)
        paid = await stripe_.start_payment(moved)  # now the customer's payment is found
        assert (paid.status, paid.provider_reference) == ("succeeded", intent["id"])


async def test_stripe_checkout_is_looked_up_through_its_session_and_expires():
    fake = FakeStripe()
    async with LocalServer(fake.app) as server:
        stripe_ = StripeProvider(fake.secret_key, WHSEC, api_base=server.url, timeout=3.0)
        soon = ChargeRequest(
            "k_1",
            "pay_1",
            5000,
            "USD",
            "http://cb",
            return_url="http://shop/back",
            expires_at=datetime.fromtimestamp(time.time() + 7200, UTC),
        )
        unpaid = (await stripe_.start_payment(soon)).provider_reference
        paid = (await stripe_.start_payment(replace(soon, idempotency_key="k_2", reference="pay_2"))).provider_reference
        assert fake.sessions[unpaid]["expires_at"] == int(soon.expires_at.timestamp())
        assert (await stripe_.get_status(unpaid)).status == "requires_action"  # open: not paid yet
        intent = fake.pay_session(paid)
        fake.sessions[unpaid]["expires_at"] = int(time.time()) - 1  # two hours on: Stripe expired it
        gone = await stripe_.get_status(unpaid)
        assert (gone.status, gone.failure_code, gone.provider_reference) == ("failed", "expired", unpaid)
        done = await stripe_.get_status(paid)  # the session's PaymentIntent, the reference refunds need
        assert (done.status, done.provider_reference) == ("succeeded", intent["id"])
        assert not [path for _, path, _ in fake.requests if path.startswith("/v1/payment_intents/cs_")]

        body = stripe_event(
            "checkout.session.expired",
            {"id": unpaid, "object": "checkout.session", "metadata": {"payment_id": "pay_1"}},
        )
        event = stripe_.verify_callback({"stripe-signature": signing.sign(WHSEC, body)}, body)
        assert (event.payment_id, event.status, event.failure_code) == ("pay_1", "failed", "expired")


async def test_paystack_adapter_dedupes_by_reference_and_checks_signatures():
    fake = FakePaystack()
    async with LocalServer(fake.app) as server:
        paystack = PaystackProvider(fake.secret_key, api_base=server.url, timeout=3.0)
        ok = await paystack.charge_saved_method(charge_request("pay_1", "AUTH_ok", currency="NGN"))
        assert (ok.status, ok.provider_reference) == ("succeeded", "pay_1")
        # Paystack keys on the reference: a second try finds the first charge instead of charging again.
        assert (
            await paystack.charge_saved_method(charge_request("pay_1", "AUTH_ok", currency="NGN"))
        ).status == "succeeded"
        assert len(fake.transactions) == 1

        with pytest.raises(ProviderUnavailable):
            await paystack.charge_saved_method(charge_request("pay_slow", "AUTH_slow", currency="NGN"))
        assert (
            await paystack.charge_saved_method(charge_request("pay_slow", "AUTH_slow", currency="NGN"))
        ).status == "succeeded"
        assert len(fake.transactions) == 2

        failed = await paystack.charge_saved_method(charge_request("pay_2", "AUTH_nofunds", currency="NGN"))
        assert (failed.status, failed.failure_reason) == ("failed", "Insufficient Funds")

        first = await paystack.refund("rf_1", "pay_1", 1000, "NGN")
        assert (await paystack.refund("rf_1", "pay_1", 1000, "NGN")).provider_reference == first.provider_reference
        assert len(fake.refunds) == 1
        with pytest.raises(ProviderError):
            await paystack.refund("rf_2", "pay_1", 4001, "NGN")

        hosted = await paystack.start_payment(ChargeRequest("k", "pay_3", 5000, "NGN", "http://cb"))
        assert hosted.redirect_url.startswith("https://checkout.paystack.test/")
        # Not paid yet (Paystack says `abandoned`): waiting for the customer, not money in flight.
        assert (await paystack.get_status("pay_3")).status == "requires_action"

        body = json.dumps(
            {
                "event": "charge.success",
                "data": {"id": 7, "reference": "pay_1", "status": "success", "metadata": {"payment_id": "pay_1"}},
            }
        ).encode()
        event = paystack.verify_callback({"x-paystack-signature": paystack_signature(fake.secret_key, body)}, body)
        assert (event.payment_id, event.status) == ("pay_1", "succeeded")
        with pytest.raises(SignatureInvalid):
            paystack.verify_callback({"x-paystack-signature": paystack_signature("sk_other", body)}, body)


async def test_tenant_routes_usd_to_stripe_and_ngn_to_paystack_through_the_service(database, kafka):
    stripe_fake, paystack_fake = FakeStripe(), FakePaystack()
    async with LocalServer(stripe_fake.app) as stripe_server, LocalServer(paystack_fake.app) as paystack_server:
        server = await start_payments_server(
            database, kafka, STRIPE_API_BASE=stripe_server.url, PAYSTACK_API_BASE=paystack_server.url
        )
        try:
            tenant, client = await server.tenant("Lagos Lamps")
            r = await client.post(
                "/api/payment-providers",
                json={
                    "provider": "stripe",
                    "currencies": ["usd"],
                    "credentials": {"secretKey": stripe_fake.secret_key, "webhookSecret": WHSEC},
                },
            )
            assert r.status_code == 201, r.text
            assert r.json()["credentials"] == "encrypted" and r.json()["currencies"] == ["USD"]
            r = await client.post(
                "/api/payment-providers",
                json={
                    "provider": "paystack",
                    "currencies": ["NGN"],
                    "credentials": {"secretKey": paystack_fake.secret_key},
                },
            )
            assert r.status_code == 201
            stored = await server.fetch("SELECT credentials FROM provider_accounts")
            assert all(b"sk_test" not in bytes(row["credentials"]) for row in stored)  # encrypted at rest
            listed = (await client.get("/api/payment-providers")).json()["data"]
            assert {p["provider"] for p in listed} == {"stripe", "paystack"} and "sk_test" not in json.dumps(listed)
            r = await client.post("/api/payment-providers", json={"provider": "stripe", "credentials": {}})
            assert r.status_code == 400 and r.json()["error"]["code"] == "credentials_invalid"

            await client.post(
                "/api/payment-methods",
                json={"customerId": "cust_us", "provider": "stripe", "token": "cus_1:pm_card_visa"},
            )
            await client.post(
                "/api/payment-methods", json={"customerId": "cust_ng", "provider": "paystack", "token": "AUTH_ok"}
            )
            usd = invoice(customer_id="cust_us", currency="USD", total=12500)
            ngn = invoice(customer_id="cust_ng", currency="NGN", total=500000)
            for inv in (usd, ngn):
                await server.publish_invoice(tenant, "invoice.finalized", inv)
                await eventually(
                    lambda inv=inv: server.fetch("SELECT 1 FROM payable_invoices WHERE invoice_id = $1", inv["id"])
                )

            paid_usd = (await client.post(f"/api/invoices/{usd['id']}/collect")).json()
            assert (paid_usd["status"], paid_usd["provider"]) == ("SUCCEEDED", "stripe")
            paid_ngn = (await client.post(f"/api/invoices/{ngn['id']}/collect")).json()
            assert (paid_ngn["status"], paid_ngn["provider"]) == ("SUCCEEDED", "paystack")
            assert len(stripe_fake.intents) == 1 and len(paystack_fake.transactions) == 1

            # Stripe's webhook for the same intent: verified, applied once, then a duplicate.
            body = stripe_event(
                "payment_intent.succeeded",
                {
                    "id": paid_usd["providerReference"],
                    "object": "payment_intent",
                    "metadata": {"payment_id": paid_usd["id"]},
                },
            )
            async with httpx.AsyncClient(base_url=server.url) as raw:
                for expected in ({"received": True}, {"received": True, "duplicate": True}):
                    r = await raw.post(
                        "/webhooks/stripe", content=body, headers={"Stripe-Signature": signing.sign(WHSEC, body)}
                    )
                    assert r.status_code == 200 and r.json() == expected
                r = await raw.post(
                    "/webhooks/stripe", content=body, headers={"Stripe-Signature": signing.sign("whsec_forged", body)}
                )
                assert r.status_code == 400 and r.json()["error"]["code"] == "signature_invalid"

                # Another tenant's Stripe account cannot settle this tenant's payments.
                _other, other_client = await server.tenant("Other Ltd")
                other_account = (
                    await other_client.post(
                        "/api/payment-providers",
                        json={
                            "provider": "stripe",
                            "credentials": {"secretKey": "sk_test_other", "webhookSecret": "whsec_other"},
                        },
                    )
                ).json()["id"]
                failed = stripe_event(
                    "payment_intent.payment_failed",
                    {
                        "id": paid_usd["providerReference"],
                        "object": "payment_intent",
                        "metadata": {"payment_id": paid_usd["id"]},
                    },
                )
                r = await raw.post(
                    f"/webhooks/stripe/{other_account}",
                    content=failed,
                    headers={"Stripe-Signature": signing.sign("whsec_other", failed)},
                )
                assert r.status_code == 200 and r.json() == {"received": True, "ignored": True}
                # Two Stripe accounts now: the bare path cannot tell whose secret to try.
                r = await raw.post(
                    "/webhooks/stripe", content=failed, headers={"Stripe-Signature": signing.sign(WHSEC, failed)}
                )
                assert r.status_code == 400 and r.json()["error"]["code"] == "callback_account_required"
                ps_body = json.dumps(
                    {"event": "charge.success", "data": {"id": 1000, "reference": paid_ngn["id"], "status": "success"}}
                ).encode()
                r = await raw.post(
                    "/webhooks/paystack",
                    content=ps_body,
                    headers={"x-paystack-signature": paystack_signature(paystack_fake.secret_key, ps_body)},
                )
                assert r.status_code == 200 and r.json() == {"received": True}
                r = await raw.post("/webhooks/paystack", content=ps_body, headers={"x-paystack-signature": "0" * 128})
                assert r.status_code == 400

            # The hosted page sends the customer to Stripe's own form for a USD invoice.
            usd2 = invoice(customer_id="cust_us", currency="USD", total=990)
            await server.publish_invoice(tenant, "invoice.finalized", usd2)
            await eventually(lambda: server.fetch("SELECT 1 FROM payable_invoices WHERE invoice_id = $1", usd2["id"]))
            link = (await client.post(f"/api/invoices/{usd2['id']}/checkout", json={})).json()["checkoutUrl"]
            async with httpx.AsyncClient() as browserless:
                assert "Continue to Stripe" in (await browserless.get(link)).text
                r = await browserless.post(link, data={"amount": "9.90"})
            assert r.status_code == 303 and r.headers["location"].startswith("https://checkout.stripe.test/c/pay/cs_")
            [session] = [x for x in stripe_fake.replies.values() if x[1].get("object") == "checkout.session"]
            assert session[1]["client_reference_id"].startswith("pay_")

            r = await client.post(f"/api/payments/{paid_usd['id']}/refund", json={"amount": 2500, "reason": "Damaged"})
            assert r.status_code == 201 and r.json()["payment"]["status"] == "PARTIALLY_REFUNDED"
            r = await client.post(f"/api/payments/{paid_ngn['id']}/refund", json={"reason": "Cancelled"})
            assert r.status_code == 201 and r.json()["payment"]["status"] == "REFUNDED"
            assert stripe_fake.intents[paid_usd["providerReference"]]["amount_refunded"] == 2500
            assert paystack_fake.transactions[paid_ngn["id"]]["refunded"] == 500000
        finally:
            await stop_payments_server(server)
