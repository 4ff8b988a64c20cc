"""Delivery behaviour against real receivers: retries, Retry-After, 410, a receiver slower than
the timeout, one endpoint down while another keeps up, and an endpoint disabled after failing."""

import asyncio
import itertools
import json
import time

import asyncpg

from tests.conftest import eventually
from tests.support.kafka import read_topic
from tests.support.webhooks_events import invoice_event, invoice_snapshot
from tests.support.webhooks_receivers import Receiver, Reply, always, fail_then_succeed
from tests.support.webhooks_service import add_tenant, free_port, start_webhooks  # noqa: F401 - fixture

FAST = [0.3, 0.3, 0.3, 0.3]  # the retry schedule, shrunk


async def _endpoint(api, receiver_or_url, **body) -> dict:
    url = receiver_or_url if isinstance(receiver_or_url, str) else receiver_or_url.url
    r = await api.post("/api/webhook-endpoints", json={"url": url, **body})
    assert r.status_code == 201, r.text
    created = r.json()
    if not isinstance(receiver_or_url, str):
        receiver_or_url.secrets = [created["secret"]]
    return created


async def _deliveries(api, endpoint_id: str) -> list[dict]:
    return (await api.get(f"/api/webhook-endpoints/{endpoint_id}/deliveries", params={"limit": 100})).json()["data"]


async def test_fails_twice_then_succeeds_and_retry_after_is_honoured(start_webhooks, database):
    svc = await start_webhooks(retry_schedule_s=FAST)
    tenant, key = await add_tenant(database, "Retry Ltd")
    busy_first = lambda n: Reply(429, headers={"Retry-After": "2"}) if n == 1 else Reply(200)  # noqa: E731
    with Receiver(fail_then_succeed(2)) as flaky, Receiver(busy_first) as busy:
        async with svc.client(key) as api:
            flaky_ep, busy_ep = await _endpoint(api, flaky), await _endpoint(api, busy)
            evt = invoice_event("invoice.created", tenant, invoice_snapshot())
            await svc.publish("invoices", evt)

            async def done(endpoint):
                [d] = await _deliveries(api, endpoint["id"]) or [None]
                return d if d and d["status"] == "succeeded" else None

            delivery = await eventually(lambda: done(flaky_ep))
            assert [a["statusCode"] for a in delivery["attempts"]] == [500, 500, 200]
            assert [a["error"] for a in delivery["attempts"]] == ["HTTP 500", "HTTP 500", None]
            assert flaky.ids() == [evt.id] * 3  # the same webhook-id each time: receivers dedupe on it
            assert all(h.verified_with for h in flaky.hits)
            gaps = [b.at - a.at for a, b in itertools.pairwise(flaky.hits)]
            assert all(g >= 0.25 for g in gaps), gaps  # 0.3 s ± 10 % jitter

            delivery = await eventually(lambda: done(busy_ep))
            assert [a["statusCode"] for a in delivery["attempts"]] == [429, 200]
            assert busy.hits[1].at - busy.hits[0].at >= 1.9  # Retry-After: 2 beat the 0.3 s schedule


async def test_410_disables_the_endpoint_with_an_event_and_replay_brings_it_back(start_webhooks, database, kafka):
    svc = await start_webhooks(retry_schedule_s=FAST)
    tenant, key = await add_tenant(database, "Gone Ltd")
    with Receiver(lambda n: Reply(410) if n == 1 else Reply(200)) as receiver:
        async with svc.client(key) as api:
            ep = await _endpoint(api, receiver)
            first = invoice_event("invoice.created", tenant, invoice_snapshot())
            await svc.publish("invoices", first)

            async def disabled():
                e = (await api.get(f"/api/webhook-endpoints/{ep['id']}")).json()
                return e if not e["enabled"] else None

            endpoint = await eventually(disabled)
            assert endpoint["disabledReason"] == "gone" and endpoint["disabledAt"]
            [delivery] = await _deliveries(api, ep["id"])
            assert delivery["status"] == "failed" and delivery["attemptCount"] == 1  # no retries after 410
            assert delivery["attempts"][0]["statusCode"] == 410

            [record] = await read_topic(kafka, svc.events_topic, at_least=1)
            published = json.loads(record.value)
            assert published["type"] == "webhook_endpoint.disabled" and published["tenantid"] == tenant
            assert published["subject"] == ep["id"] and record.key.decode() == ep["id"]
            assert published["data"]["reason"] == "gone" and "secret" not in published["data"]["endpoint"]

            # A disabled endpoint gets no new deliveries, and cannot be retried until enabled.
            second = invoice_event("invoice.created", tenant, invoice_snapshot())
            await svc.publish("invoices", second)
            await eventually(lambda: _handled(database, second.id))  # its deliveries commit with this
            assert len(await _deliveries(api, ep["id"])) == 1
            r = await api.post(f"/api/webhook-deliveries/{delivery['id']}/retry")
            assert r.status_code == 409 and r.json()["error"]["code"] == "endpoint_disabled"

            r = await api.patch(f"/api/webhook-endpoints/{ep['id']}", json={"enabled": True})
            assert r.json()["enabled"] is True and r.json()["disabledReason"] is None
            r = await api.post(f"/api/webhook-deliveries/{delivery['id']}/retry")
            assert r.status_code == 202 and r.json()["status"] == "pending"
            # The event that arrived while disabled can be resent.
            r = await api.post(f"/api/events/{second.id}/resend")
            assert r.status_code == 202 and [d["endpointId"] for d in r.json()["data"]] == [ep["id"]]
            await eventually(lambda: _ids_include(receiver, {first.id, second.id}))
            assert receiver.hits[-1].verified_with

            async def both_succeeded():
                ds = await _deliveries(api, ep["id"])
                return ds if len(ds) == 2 and all(d["status"] == "succeeded" for d in ds) else None

            await eventually(both_succeeded)
            assert (await api.post("/api/events/evt_unknown/resend")).status_code == 404
            _, other_key = await add_tenant(database, "Other Ltd")
            async with svc.client(other_key) as other:
                assert (await other.post(f"/api/events/{first.id}/resend")).status_code == 404
                assert (await other.post(f"/api/webhook-deliveries/{delivery['id']}/retry")).status_code == 404


async def test_slower_than_the_timeout_is_a_failure_kept_and_replayable(start_webhooks, database):
    svc = await start_webhooks(delivery_timeout_s=1, retry_schedule_s=[0.3])
    tenant, key = await add_tenant(database, "Slow Ltd")
    # The first two answers come after 30 s: far past the 1 s timeout whatever the load.
    with Receiver(lambda n: Reply(200, delay=30 if n <= 2 else 0)) as receiver:
        async with svc.client(key) as api:
            ep = await _endpoint(api, receiver)
            evt = invoice_event("invoice.created", tenant, invoice_snapshot())
            await svc.publish("invoices", evt)

            async def exhausted():
                [d] = await _deliveries(api, ep["id"]) or [None]
                return d if d and d["status"] == "failed" else None

            delivery = await eventually(exhausted)
            assert len(delivery["attempts"]) == 2  # the first and the one retry of the schedule
            for attempt in delivery["attempts"]:
                assert attempt["statusCode"] is None and attempt["error"].startswith("timeout")
                assert 900 <= attempt["latencyMs"] < 1000 + 10_000  # cut at the timeout, not the 30 s answer
            assert delivery["nextAttemptAt"] is None

            r = await api.post(f"/api/webhook-deliveries/{delivery['id']}/retry")
            assert r.status_code == 202

            async def succeeded():
                d = (await api.get(f"/api/webhook-deliveries/{delivery['id']}")).json()
                return d if d["status"] == "succeeded" else None

            replayed = await eventually(succeeded)
            assert [a["statusCode"] for a in replayed["attempts"]] == [None, None, 200]


async def test_one_endpoint_down_does_not_hold_up_another(start_webhooks, database):
    # A hanging attempt holds its slot for the whole 30 s timeout: a healthy endpoint that had to
    # wait for such slots would lag 30 s or more, so 10 s is a margin a loaded machine keeps.
    svc = await start_webhooks(delivery_timeout_s=30, retry_schedule_s=FAST, per_endpoint_concurrency=2)
    tenant, key = await add_tenant(database, "Busy Ltd")
    with Receiver(always(200, delay=60)) as hanging, Receiver() as healthy:
        async with svc.client(key) as api:
            await _endpoint(api, hanging)
            await _endpoint(api, f"http://127.0.0.1:{free_port()}/nobody-listens")
            await _endpoint(api, healthy)
            sent_at = {}
            for i in range(30):
                evt = invoice_event("invoice.created", tenant, invoice_snapshot())
                sent_at[evt.id] = time.monotonic()
                await svc.publish("invoices", evt)
                if i % 10 == 9:
                    await asyncio.sleep(0.2)
            await eventually(lambda: _ids_include(healthy, set(sent_at)), timeout=60)
            lags = [h.at - sent_at[h.webhook_id] for h in healthy.hits]
            assert max(lags) < 10.0, sorted(lags)[-5:]
            assert all(h.verified_with for h in healthy.hits)
            assert len(hanging.hits) <= 2 + 2  # its own cap, not everyone's slots


async def test_an_endpoint_failing_for_too_long_is_disabled_and_an_event_says_so(start_webhooks, database, kafka):
    svc = await start_webhooks(retry_schedule_s=[0.3] * 20, disable_after_failing_s=1.5)
    tenant, key = await add_tenant(database, "Down Ltd")
    async with svc.client(key) as api:
        ep = await _endpoint(api, f"http://127.0.0.1:{free_port()}/down")
        await svc.publish("invoices", invoice_event("invoice.created", tenant, invoice_snapshot()))

        async def disabled():
            e = (await api.get(f"/api/webhook-endpoints/{ep['id']}")).json()
            return e if not e["enabled"] else None

        endpoint = await eventually(disabled)
        assert endpoint["disabledReason"] == "failing" and endpoint["failingSince"]
        [record] = await read_topic(kafka, svc.events_topic, at_least=1)
        published = json.loads(record.value)
        assert published["type"] == "webhook_endpoint.disabled"
        assert published["data"]["reason"] == "failing" and "ConnectError" in published["data"]["detail"]
        [delivery] = await _deliveries(api, ep["id"])
        assert delivery["status"] == "failed" and delivery["attemptCount"] >= 2
        assert all(a["statusCode"] is None and "ConnectError" in a["error"] for a in delivery["attempts"])


async def _handled(dsn: str, event_id: str) -> bool:
    """The service's inbox has the event: whatever deliveries it makes were written with it."""
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT true FROM inbox WHERE event_id = $1 LIMIT 1", event_id))
    finally:
        await conn.close()


async def _ids_include(receiver: Receiver, wanted: set[str]) -> bool:
    return wanted <= {h.webhook_id for h in receiver.verified_hits()}
