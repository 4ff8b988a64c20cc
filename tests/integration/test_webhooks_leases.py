"""Two webhooks processes on one database compete for the same due deliveries: a claim is a lease,
so each delivery is attempted once (by one of them), never by both and never twice by one."""

from collections import Counter

from tests.conftest import eventually
from tests.support.webhooks_events import invoice_event, invoice_snapshot
from tests.support.webhooks_receivers import Receiver, Reply
from tests.support.webhooks_service import WebhooksProcess, add_tenant, start_webhooks  # noqa: F401 - fixture

EVENTS = 20


def delivered(proc: WebhooksProcess) -> list[str]:
    return [line["delivery_id"] for line in proc.log_lines() if line.get("event") == "webhook delivered"]


async def test_two_processes_attempt_each_delivery_once_per_lease(start_webhooks, database):
    # Each process runs at most 3 attempts at once and the receiver takes 2 s per request, so one
    # process alone cannot take all 20: both must claim some. The endpoint's cap of 5 is shared.
    first = await start_webhooks(delivery_concurrency=3, per_endpoint_concurrency=5)
    second = await start_webhooks(delivery_concurrency=3, per_endpoint_concurrency=5)  # same database
    tenant, key = await add_tenant(database, "Lease Ltd")
    with Receiver(lambda n: Reply(200, delay=2.0)) as receiver:
        async with first.client(key) as api:
            r = await api.post("/api/webhook-endpoints", json={"url": receiver.url})
            assert r.status_code == 201, r.text
            receiver.secrets = [r.json()["secret"]]
            events = [invoice_event("invoice.created", tenant, invoice_snapshot()) for _ in range(EVENTS)]
            await first.publish("invoices", *events)

            async def all_succeeded():
                body = (
                    await api.get(f"/api/webhook-endpoints/{r.json()['id']}/deliveries", params={"limit": 100})
                ).json()["data"]
                done = [d for d in body if d["status"] == "succeeded"]
                return body if len(done) == EVENTS else None

            deliveries = await eventually(all_succeeded, timeout=90, interval=0.3)

    # One attempt per delivery, recorded once and received once.
    assert [len(d["attempts"]) for d in deliveries] == [1] * EVENTS
    assert Counter(receiver.ids()) == Counter({e.id: 1 for e in events})
    assert all(h.verified_with for h in receiver.hits)
    by_first, by_second = delivered(first), delivered(second)
    assert sorted(by_first + by_second) == sorted(d["id"] for d in deliveries)  # nobody delivered one twice
    assert by_first and by_second, (len(by_first), len(by_second))  # both competed for them
    # The cap holds across the two: never more than 5 requests open at the receiver (each 2 s long).
    arrivals = sorted(h.at for h in receiver.hits)
    assert max(sum(1 for b in arrivals if a - 1.9 < b <= a) for a in arrivals) == 5
