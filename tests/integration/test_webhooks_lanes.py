"""Delivery lanes: a dead endpoint never delays anyone else's deliveries. The worker's claims run
on a real PostgreSQL without the service process, so the tests assert on what each claim takes,
not on timings: a backlog does not crowd out a healthy endpoint, the in-flight cap holds across
replicas, an endpoint failing again and again waits as a whole, and connects time out early."""

import asyncio
import socket
import uuid
from collections import Counter
from pathlib import Path

import pytest

from services.webhooks.app.delivery import DeliveryWorker
from services.webhooks.app.signing import new_secret
from services.webhooks.domain.events import registry
from services.webhooks.settings import DEV_SECRETS_KEY
from shared.aggregate import Aggregates
from shared.db import create_pool, migrate
from shared.eventstore import EventStore
from shared.vault import Vault
from tests.support.webhooks_receivers import Receiver, Reply

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "webhooks" / "migrations"
AGGREGATES = Aggregates(EventStore({"webhook_endpoint": "test.unused"}), registry, "/billstream/webhooks")
TENANT = "ten_lanes"


@pytest.fixture
async def wpool(database, pool):
    await migrate(database, MIGRATIONS)
    return pool


async def endpoint(pool, endpoint_id: str, url: str = "http://127.0.0.1:9/none") -> str:
    """An endpoint as the API stores it; returns its secret."""
    secret = new_secret()
    await pool.execute(
        """INSERT INTO webhook_endpoints (endpoint_id, tenant_id, url, secret, enabled_events)
           VALUES ($1, $2, $3, $4, '{*}')""",
        endpoint_id,
        TENANT,
        url,
        Vault(DEV_SECRETS_KEY).encrypt_text(secret),
    )
    return secret


async def queue(pool, endpoint_id: str, n: int, *, age_s: float = 0) -> list[str]:
    """`n` due deliveries for the endpoint, the newest due `age_s` ago, each one second older."""
    rows = await pool.fetch(
        """INSERT INTO webhook_deliveries (delivery_id, tenant_id, endpoint_id, event_id, event_type, payload,
                                           next_attempt_at)
           SELECT 'whd_' || $4 || g, $1, $2, 'evt_' || $4 || g, 'invoice.created', '{}',
                  now() - make_interval(secs => $3 + g)
             FROM generate_series(1, $5::int) AS g RETURNING delivery_id""",
        TENANT,
        endpoint_id,
        float(age_s),
        uuid.uuid4().hex[:10],
        n,
    )
    return [r["delivery_id"] for r in rows]


def worker(database, pool, **settings) -> DeliveryWorker:
    return DeliveryWorker(database, pool, AGGREGATES, timeout=10, allow_private=True, **settings)


def lanes(claimed) -> Counter:
    return Counter(r["endpoint_id"] for r in claimed)


async def test_a_dead_endpoints_backlog_does_not_delay_a_healthy_endpoint(database, wpool):
    for dead in ("we_dead1", "we_dead2", "we_dead3"):
        await endpoint(wpool, dead)
        await queue(wpool, dead, 3000, age_s=600)  # due for ten minutes and more
    await endpoint(wpool, "we_healthy")
    [first] = await queue(wpool, "we_healthy", 1)
    w = worker(database, wpool, per_endpoint=5)

    # Fewer free slots than the dead endpoints' caps together: the healthy one still gets its turn.
    claimed = await w.claim(10)
    assert first in {r["delivery_id"] for r in claimed}
    assert lanes(claimed) == {"we_dead1": 3, "we_dead2": 3, "we_dead3": 3, "we_healthy": 1}

    # Its next delivery, the newest due of all, takes the one slot free: its lane has fewest in flight.
    [second] = await queue(wpool, "we_healthy", 1)
    assert [r["delivery_id"] for r in await w.claim(1)] == [second]
    # The dead lanes fill up to their cap and no further.
    assert lanes(await w.claim(50)) == {"we_dead1": 2, "we_dead2": 2, "we_dead3": 2}
    assert await w.claim(50) == []


async def test_the_in_flight_cap_holds_across_replicas(database, wpool):
    replicas = [await create_pool(database, max_size=4) for _ in range(2)]
    a, b = (worker(database, p, per_endpoint=3) for p in replicas)
    with Receiver() as receiver:
        receiver.secrets = [await endpoint(wpool, "we_slow", receiver.url)]
        await queue(wpool, "we_slow", 20)
        try:
            # Two replicas claiming at once, twice each: together they lease the cap, no more.
            claims = await asyncio.gather(a.claim(10), b.claim(10), a.claim(10), b.claim(10))
            assert sum(len(c) for c in claims) == 3

            # An attempt recorded frees one slot, for whichever replica claims first.
            async with a.client() as client:
                await a.attempt(client, next(r for c in claims for r in c))
            assert len(receiver.verified_hits()) == 1
            claims = await asyncio.gather(b.claim(10), a.claim(10))
            assert sum(len(c) for c in claims) == 1

            # A replica that died holds its slots only until their leases run out.
            await wpool.execute(
                """UPDATE webhook_deliveries SET leased_until = now() - interval '1 second',
                                          next_attempt_at = now() - interval '1 second'
                                    WHERE delivery_id = $1""",
                next(r for c in claims for r in c)["delivery_id"],
            )
            assert len(await b.claim(10)) == 1
        finally:
            for p in replicas:
                await p.close()


async def test_an_endpoint_failing_again_and_again_waits_as_a_whole_until_a_success(database, wpool):
    with Receiver(lambda n: Reply(500 if n <= 4 else 200)) as receiver:
        receiver.secrets = [await endpoint(wpool, "we_flaky", receiver.url)]
        await endpoint(wpool, "we_other")
        await queue(wpool, "we_flaky", 3)
        # Each delivery on its own would be retried at once: only the endpoint's state holds them.
        w = worker(database, wpool, per_endpoint=5, failure_threshold=3, endpoint_backoff=[3600], schedule=[0] * 5)

        async def attempt_all(claimed) -> None:
            async with w.client() as client:
                for row in claimed:
                    await w.attempt(client, row)

        await attempt_all(await w.claim(10))  # three failures in a row
        assert len(receiver.hits) == 3

        # Not tried before its retry time, not even for a new message; others are unaffected.
        await queue(wpool, "we_flaky", 1)
        [other] = await queue(wpool, "we_other", 1)
        assert [r["delivery_id"] for r in await w.claim(10)] == [other]
        state = await wpool.fetchrow(
            """SELECT consecutive_failures, next_attempt_at - now() AS wait FROM webhook_endpoints
                WHERE endpoint_id = 'we_flaky'"""
        )
        assert state["consecutive_failures"] == 3 and state["wait"].total_seconds() > 3000

        # Its retry time comes: one probe, though four deliveries are due. It fails: it waits again.
        retry_time_passes = "UPDATE webhook_endpoints SET next_attempt_at = now() - interval '1 second'"
        await wpool.execute(retry_time_passes)
        probe = await w.claim(10)
        assert lanes(probe) == {"we_flaky": 1}
        await attempt_all(probe)
        assert len(receiver.hits) == 4 and await w.claim(10) == []

        # The next probe succeeds: the streak and the wait are reset, and the backlog flows again.
        await wpool.execute(retry_time_passes)
        await attempt_all(await w.claim(10))
        assert len(receiver.hits) == 5
        state = await wpool.fetchrow(
            """SELECT consecutive_failures, next_attempt_at, failing_since FROM webhook_endpoints
                WHERE endpoint_id = 'we_flaky'"""
        )
        assert tuple(state) == (0, None, None)
        assert lanes(await w.claim(10)) == {"we_flaky": 3}


async def test_a_black_holed_connect_gives_up_at_the_connect_timeout(database, wpool):
    with socket.socket() as hole, socket.socket() as filler:
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)  # never accepted: once our own connection fills the queue, SYNs are dropped
        filler.connect(hole.getsockname())
        await endpoint(wpool, "we_hole", f"http://127.0.0.1:{hole.getsockname()[1]}/")
        [delivery] = await queue(wpool, "we_hole", 1)
        w = worker(database, wpool)  # a 10 s attempt timeout
        async with w.client() as client:
            [row] = await w.claim(1)
            await w.attempt(client, row)
    attempt = await wpool.fetchrow("SELECT error, latency_ms FROM webhook_attempts WHERE delivery_id = $1", delivery)
    assert attempt["error"].startswith("ConnectError"), attempt["error"]  # not the attempt's timeout
    assert attempt["latency_ms"] < 10_000
