import base64
import hashlib
import hmac
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.webhooks.app.delivery import MAX_RETRY_AFTER_S, next_delay, parse_retry_after
from services.webhooks.app.matching import invalid_filter, payload_for, wants
from services.webhooks.app.signing import active_secrets, new_secret, sign_headers
from services.webhooks.app.urls import check_endpoint_url
from shared.envelope import CloudEvent
from shared.errors import Refused


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["*"], "invoice.paid", True),
        (["invoice.*"], "invoice.paid", True),
        (["invoice.*"], "payment.failed", False),
        (["invoice.paid"], "invoice.paid", True),
        (["invoice.paid"], "invoice.paid_out", False),
    ],
)
def test_event_type_filters(patterns, event_type, expected):
    assert wants(patterns, event_type) is expected


def test_payload_is_id_type_created_at_data_and_verifies_as_signed():
    event = CloudEvent.new(
        type="invoice.created",
        source="/t",
        subject="inv_1",
        tenant_id="ten_1",
        data={"invoiceId": "inv_1", "total": 100},
    )
    event = event.model_copy(update={"time": datetime(2027, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)})
    body = payload_for(event)
    # createdAt pinned (RFC 3339 in UTC with a Z), not taken from the product's own serialiser.
    assert json.loads(body) == {
        "id": event.id,
        "type": "invoice.created",
        "livemode": True,
        "createdAt": "2027-01-02T03:04:05.678000Z",
        "data": {"invoiceId": "inv_1", "total": 100},
    }
    test_event = event.model_copy(update={"tenantid": "ten_1_test"})  # a test key's world
    assert json.loads(payload_for(test_event))["livemode"] is False
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    hook = Webhook(secret)
    sent = datetime.now(UTC)  # the library refuses timestamps far from now
    signature = hook.sign(event.id, sent, body)
    headers = {"webhook-id": event.id, "webhook-timestamp": str(int(sent.timestamp())), "webhook-signature": signature}
    assert hook.verify(body, headers) == json.loads(body)


def test_retry_schedule_grows_with_jitter_and_ends():
    random.seed(7)
    documented = [5, 300, 1800, 7200, 18000, 36000, 36000]  # docs/webhooks.md: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
    delays = [next_delay(n) for n in range(1, len(documented) + 1)]
    for got, base in zip(delays, documented, strict=True):
        assert base * 0.9 <= got <= base * 1.1
    assert next_delay(len(documented) + 1) is None
    assert next_delay(1, retry_after=120) == 120  # Retry-After longer than the schedule wins
    assert parse_retry_after("30") == 30 and parse_retry_after("soon") is None


async def test_private_urls_are_refused_unless_allowed():
    with pytest.raises(Refused) as err:
        await check_endpoint_url("http://127.0.0.1:9/hook", allow_private=False)
    assert err.value.code == "url_not_public"
    with pytest.raises(Refused) as err:
        await check_endpoint_url("ftp://example.com/x", allow_private=True)
    assert err.value.code == "url_invalid"
    await check_endpoint_url("http://127.0.0.1:9/hook", allow_private=True)


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        ("*", True),
        ("invoice.*", True),
        ("invoice.payment_received", True),
        ("dunning.reminder_due", True),
        ("invoice.payed", False),
        ("invoice.", False),
        ("Invoice.paid", False),
        ("inv[a-z]ice.*", False),
        ("billing.*", False),
        ("", False),
    ],
)
def test_event_filters_are_checked_against_the_public_types(pattern, ok):
    assert (invalid_filter(pattern) is None) is ok


def test_during_rotation_both_secrets_sign_and_either_verifies():
    old, new = new_secret(), new_secret()
    assert old.startswith("whsec_") and old != new
    now = datetime.now(UTC)
    assert active_secrets(new, old, now + timedelta(hours=24), now) == [new, old]
    assert active_secrets(new, old, now - timedelta(seconds=1), now) == [new]
    assert active_secrets(new, None, None, now) == [new]
    body = '{"id":"evt_1"}'
    headers = sign_headers("evt_1", body, now, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    # The Standard Webhooks scheme, computed here from the spec rather than by the library the
    # product signs with: v1,base64(HMAC-SHA256(base64-decoded secret, "<id>.<timestamp>.<body>")).
    at = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)

    def spec(secret: str) -> str:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        return (
            "v1,"
            + base64.b64encode(
                hmac.new(key, f"evt_1.{int(at.timestamp())}.{body}".encode(), hashlib.sha256).digest()
            ).decode()
        )

    pinned = sign_headers("evt_1", body, at, [new, old])
    assert pinned == {
        "webhook-id": "evt_1",
        "webhook-timestamp": "1798859045",
        "webhook-signature": f"{spec(new)} {spec(old)}",
    }
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == {"id": "evt_1"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_retry_after_as_an_http_date_and_capped():
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert parse_retry_after("Mon, 23 Nov 2026 12:00:30 GMT", now) == 30
    assert parse_retry_after("Mon, 23 Nov 2026 11:00:00 GMT", now) == 0
    assert parse_retry_after("-5") == 0 and parse_retry_after(None) is None
    assert next_delay(1, retry_after=10 * 24 * 3600) == MAX_RETRY_AFTER_S
    assert next_delay(3, schedule=[1, 2]) is None
    assert 1.8 <= next_delay(2, schedule=[1, 2]) <= 2.2
