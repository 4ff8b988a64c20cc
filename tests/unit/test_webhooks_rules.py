import json
import random

import pytest
from standardwebhooks.webhooks import Webhook

from services.webhooks.app.delivery import RETRY_DELAYS, next_delay, parse_retry_after
from services.webhooks.app.matching import payload_for, wants
from services.webhooks.app.urls import check_endpoint_url
from shared.envelope import CloudEvent
from shared.errors import ApiError


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [(["*"], "invoice.paid", True), (["invoice.*"], "invoice.paid", True),
     (["invoice.*"], "payment.failed", False), (["invoice.paid"], "invoice.paid", True),
     (["invoice.paid"], "invoice.paid_out", False)],
)
def test_event_type_filters(patterns, event_type, expected):
    assert wants(patterns, event_type) is expected


def test_payload_is_id_type_created_at_data_and_verifies_as_signed():
    event = CloudEvent.new(type="invoice.created", source="/t", subject="inv_1", tenant_id="ten_1",
                           data={"invoiceId": "inv_1", "total": 100})
    body = payload_for(event)
    assert json.loads(body) == {"id": event.id, "type": "invoice.created",
                                "createdAt": event.model_dump(mode="json")["time"], "data": event.data}
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    hook = Webhook(secret)
    signature = hook.sign(event.id, event.time, body)
    headers = {"webhook-id": event.id, "webhook-timestamp": str(int(event.time.timestamp())),
               "webhook-signature": signature}
    assert hook.verify(body, headers) == json.loads(body)


def test_retry_schedule_grows_with_jitter_and_ends():
    random.seed(7)
    delays = [next_delay(n) for n in range(1, len(RETRY_DELAYS) + 1)]
    for got, base in zip(delays, RETRY_DELAYS, strict=True):
        assert base * 0.9 <= got <= base * 1.1
    assert next_delay(len(RETRY_DELAYS) + 1) is None
    assert next_delay(1, retry_after=120) == 120  # Retry-After longer than the schedule wins
    assert parse_retry_after("30") == 30 and parse_retry_after("soon") is None


async def test_private_urls_are_refused_unless_allowed():
    with pytest.raises(ApiError) as err:
        await check_endpoint_url("http://127.0.0.1:9/hook", allow_private=False)
    assert err.value.code == "url_not_public"
    with pytest.raises(ApiError) as err:
        await check_endpoint_url("ftp://example.com/x", allow_private=True)
    assert err.value.code == "url_invalid"
    await check_endpoint_url("http://127.0.0.1:9/hook", allow_private=True)
