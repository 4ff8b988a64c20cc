"""The webhooks service killed (SIGKILL) while a delivery is in flight, then restarted: the
delivery recorded before the attempt is made again once its lease runs out, and events that
arrived while it was down are delivered too. Nothing is lost; receivers dedupe on webhook-id."""

import asyncio

from tests.conftest import eventually
from tests.support.webhooks_events import invoice_event, invoice_snapshot
from tests.support.webhooks_receivers import Receiver, Reply
from tests.support.webhooks_service import add_tenant, start_webhooks  # noqa: F401 - fixture


async def test_killed_mid_delivery_then_restarted_loses_nothing(start_webhooks, database):
    svc = await start_webhooks(delivery_timeout_s=2, delivery_lease_s=2)  # lease = timeout + 5 s
    tenant, key = await add_tenant(database, "Crash Ltd")
    # The first request hangs past the crash; later ones are answered at once.
    with Receiver(lambda n: Reply(200, delay=8 if n == 1 else 0)) as receiver:
        async with svc.client(key) as api:
            created = (await api.post("/api/webhook-endpoints", json={"url": receiver.url})).json()
            receiver.secrets = [created["secret"]]
            first = invoice_event("invoice.created", tenant, invoice_snapshot())
            await svc.publish("invoices", first)
            await eventually(lambda: _hits(receiver, 1))  # the attempt is in flight

        await svc.kill()
        later = [invoice_event("invoice.created", tenant, invoice_snapshot()) for _ in range(3)]
        await svc.publish("invoices", *later)  # while the service is down
        await asyncio.sleep(0.5)
        await svc.start()

        async with svc.client(key) as api:

            async def all_succeeded():
                data = (await api.get(f"/api/webhook-endpoints/{created['id']}/deliveries")).json()["data"]
                return data if len(data) == 4 and all(d["status"] == "succeeded" for d in data) else None

            deliveries = await eventually(all_succeeded, timeout=30)
        wanted = {first.id, *(e.id for e in later)}
        assert {d["eventId"] for d in deliveries} == wanted
        assert wanted <= {h.webhook_id for h in receiver.verified_hits()}
        assert receiver.ids().count(first.id) == 2  # at least once: the interrupted one went again
        retried = next(d for d in deliveries if d["eventId"] == first.id)
        # The killed attempt left no record; the one after the restart did.
        assert [a["statusCode"] for a in retried["attempts"]] == [200]
        hits = [h for h in receiver.hits if h.webhook_id == first.id]
        assert hits[1].at - hits[0].at >= 6.5  # only after the lease ran out


async def _hits(receiver: Receiver, n: int) -> bool:
    return len(receiver.hits) >= n
