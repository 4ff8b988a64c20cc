"""Provider plumbing without servers: routing, credential encryption, callback signatures, the
sandbox's instruments and plans, money parsing for the hosted page."""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from services.payments.app.routing import SANDBOX_DEFAULT, Account, NoProvider, choose
from services.payments.domain import money
from services.payments.providers import signing
from services.payments.providers.base import Instrument, ProviderError, SignatureInvalid
from services.payments.providers.sandbox import SandboxProvider, normalise
from services.payments.providers.sandbox_server import plan
from services.payments.providers.stripe_adapter import _session_expiry
from shared.vault import Vault

STRIPE_USD = Account("a1", "stripe", ("USD", "EUR"), 10)
MOMO_UGX = Account("a2", "sandbox", ("UGX",), 10)
CATCH_ALL = Account("a3", "paystack", (), 50)


def test_routing_prefers_an_explicit_currency_then_priority():
    accounts = [CATCH_ALL, STRIPE_USD, MOMO_UGX]
    assert choose(accounts, "USD").account_id == "a1"
    assert choose(accounts, "UGX").account_id == "a2"
    assert choose(accounts, "NGN").account_id == "a3"  # the catch-all
    cheaper = Account("a4", "paystack", ("USD",), 5)
    assert choose([*accounts, cheaper], "USD").account_id == "a4"


def test_routing_for_a_saved_method_keeps_its_provider_and_falls_back_to_the_sandbox():
    assert choose([STRIPE_USD], "USD", provider="stripe").account_id == "a1"
    assert choose([STRIPE_USD], "UGX").account_id == SANDBOX_DEFAULT
    with pytest.raises(NoProvider):
        choose([STRIPE_USD], "UGX", provider="stripe")
    with pytest.raises(NoProvider):
        choose([], "USD", sandbox_enabled=False)


def test_vault_encrypts_and_rotates_keys():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    secret = {"secretKey": "sk_live_abc", "webhookSecret": "whsec_1"}
    token = Vault(old).encrypt(secret)
    assert b"sk_live_abc" not in token
    rotated = Vault(f"{new},{old}")
    assert rotated.decrypt(token) == secret
    assert Vault(new).decrypt(rotated.rotate(token)) == secret
    with pytest.raises(ValueError):
        Vault(new).decrypt(token)


def test_signatures_verify_and_refuse_forgeries_and_replays():
    body = b'{"id":"evt_1"}'
    # A pinned vector of the documented scheme (Stripe's): t=<unix>,v1=hex(HMAC-SHA256(secret,
    # "<t>." + body)), computed once outside the product, so sign and verify cannot agree on a
    # wrong scheme between themselves.
    pinned = "t=1700000000,v1=e7e846cdb96220c3674ade89e534304fc91f6f15064facee1e7a7096f5f57f62"
    assert signing.sign("whsec", body, 1700000000) == pinned
    signing.verify("whsec", pinned, body, now=1700000000 + 299)  # within the 5-minute window
    signing.verify("whsec", "t=1700000000,v1=00ff,v1=" + pinned.split("v1=")[1], body, now=1700000000)  # any v1
    with pytest.raises(SignatureInvalid, match="tolerance"):
        signing.verify("whsec", pinned, body, now=1700000000 + 301)
    header = signing.sign("whsec", body)
    signing.verify("whsec", header, body)
    for bad_secret, bad_body, bad_header in (
        ("other", body, header),
        ("whsec", body + b" ", header),
        ("whsec", body, None),
        ("whsec", body, "v1=abc"),
    ):
        with pytest.raises(SignatureInvalid):
            signing.verify(bad_secret, bad_header, bad_body)
    old = signing.sign("whsec", body, int(time.time()) - 3600)
    with pytest.raises(SignatureInvalid, match="tolerance"):
        signing.verify("whsec", old, body)


def test_sandbox_callbacks_parse_after_verification():
    provider = SandboxProvider("http://sandbox", "sk", "whsec")
    body = json.dumps(
        {
            "id": "evt_1",
            "type": "charge.failed",
            "data": {
                "charge": {
                    "id": "ch_1",
                    "reference": "pay_1",
                    "failureCode": "card_declined",
                    "failureMessage": "Declined",
                }
            },
        }
    ).encode()
    event = provider.verify_callback({"sandbox-signature": signing.sign("whsec", body)}, body)
    assert (event.event_id, event.payment_id, event.status, event.failure_code) == (
        "evt_1",
        "pay_1",
        "failed",
        "card_declined",
    )
    with pytest.raises(SignatureInvalid):
        provider.verify_callback({"sandbox-signature": signing.sign("nope", body)}, body)


def test_sandbox_instruments():
    assert normalise(Instrument("card", "4242 4242 4242 4242")).number == "4242424242424242"
    with pytest.raises(ProviderError) as err:
        normalise(Instrument("card", "1234 5678 9012 3456"))
    assert err.value.code == "instrument_invalid"
    card = lambda n: Instrument("card", n)  # noqa: E731
    momo = lambda n: Instrument("mobile_money", n)  # noqa: E731
    assert plan(card("4242424242424242"), None, 1, 9) == ("succeeded", None, 1, False)
    assert plan(card("4000000000000002"), None, 1, 9) == ("failed", "card_declined", 1, False)
    assert plan(card("4000000000009995"), None, 1, 9)[1] == "insufficient_funds"
    assert plan(card("4000000000000119"), None, 1, 9)[:2] == ("failed", "try_again_later")
    assert plan(card("4000000000000119"), "try_again_later", 1, 9)[0] == "succeeded"
    assert plan(momo("256700000001"), None, 1, 9)[0] == "succeeded"
    assert plan(momo("256700000002"), None, 1, 9)[1] == "insufficient_funds"
    assert plan(momo("256700000003"), None, 1, 9) == ("succeeded", None, 9, True)
    assert plan(momo("256700000004"), None, 1, 9) == ("failed", "approval_timeout", 9, False)


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("1250.50", "USD", 125050),
        ("1,250", "USD", 125000),
        ("70000", "UGX", 70000),
        ("1.250", "KWD", 1250),
    ],
)
def test_amounts_typed_on_the_page_become_minor_units(text, currency, minor):
    assert money.to_minor(text, currency) == minor
    assert money.to_minor(money.to_major_text(minor, currency), currency) == minor


@pytest.mark.parametrize(("text", "currency"), [("10.5", "UGX"), ("1.001", "USD"), ("abc", "USD"), ("NaN", "USD")])
def test_amounts_with_too_many_decimals_or_not_numbers_are_refused(text, currency):
    with pytest.raises(ValueError):
        money.to_minor(text, currency)


def test_an_empty_or_missing_secret_never_verifies():
    # Anyone can compute a signature with the empty key: it must be refused, never checked.
    import hashlib
    import hmac

    from services.payments.providers import factory
    from services.payments.providers.paystack import PaystackProvider
    from services.payments.settings import Settings

    body = b'{"id":"evt_1","type":"charge.succeeded","data":{"charge":{"id":"ch_1","reference":"pay_1"}}}'
    signed_empty = signing.sign("", body)
    with pytest.raises(SignatureInvalid):
        signing.verify("", signed_empty, body)
    with pytest.raises(SignatureInvalid):
        SandboxProvider("http://127.0.0.1:9/sandbox/v1", "sk", "").verify_callback(
            {"sandbox-signature": signed_empty}, body
        )
    stripe_ = factory.build("stripe", {"secretKey": "sk_test_x"}, Settings())  # an account stored without one
    for header in (signed_empty, None):
        with pytest.raises(SignatureInvalid):
            stripe_.verify_callback({"stripe-signature": header}, body)
    paystack_empty = hmac.new(b"", body, hashlib.sha512).hexdigest()
    with pytest.raises(SignatureInvalid):
        PaystackProvider("").verify_callback({"x-paystack-signature": paystack_empty}, body)


def test_each_account_has_its_own_callback_path():
    from services.payments.app.webhooks_in import callback_url

    assert (
        callback_url("http://pay:8002", Account(SANDBOX_DEFAULT, "sandbox"))
        == "http://pay:8002/webhooks/sandbox/default"
    )
    assert callback_url("http://pay:8002", STRIPE_USD) == "http://pay:8002/webhooks/stripe/a1"


def test_a_hosted_checkout_is_judged_by_its_session_and_an_unpaid_one_waits_for_the_customer():
    from services.payments.providers.paystack import PaystackProvider
    from services.payments.providers.stripe_adapter import StripeProvider

    session = {"id": "cs_1", "url": "https://checkout.stripe.test/cs_1", "payment_intent": None}
    assert StripeProvider._session_result({**session, "status": "open"}).status == "requires_action"
    gone = StripeProvider._session_result({**session, "status": "expired"})
    assert (gone.status, gone.failure_code, gone.provider_reference) == ("failed", "expired", "cs_1")
    intent = {"id": "pi_1", "status": "succeeded", "last_payment_error": None}
    paid = StripeProvider._session_result({**session, "status": "complete", "payment_intent": intent})
    assert (paid.status, paid.provider_reference) == ("succeeded", "pi_1")  # refunds need the intent
    # Paystack's `abandoned`: the customer has not paid yet (expirable), not money in flight.
    assert PaystackProvider._result({"reference": "pay_1", "status": "abandoned"}).status == "requires_action"
    assert PaystackProvider._result({"reference": "pay_1", "status": "ongoing"}).status == "processing"


def test_a_stripe_session_expiry_is_moved_into_the_window_stripe_takes():
    now = datetime.now(UTC)
    ahead = lambda seconds: _session_expiry(now + timedelta(seconds=seconds)) - now.timestamp()  # noqa: E731
    assert 1800 < ahead(4) < 1900  # Stripe refuses under 30 minutes
    assert abs(ahead(6 * 3600) - 6 * 3600) <= 1  # inside the window: our deadline as it is
    assert 86000 < ahead(30 * 3600) < 86400  # and over 24 hours
    assert _session_expiry(None) is None
