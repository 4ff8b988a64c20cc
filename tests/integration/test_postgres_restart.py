"""PostgreSQL stopped in immediate mode (as a crash would) and down for a while, under a consumer
at work: every event's effect is there exactly once, nothing is dead-lettered, and /ready's body
says what is being retried meanwhile. The server is a private throwaway cluster
(tests/support/private_postgres.py), never the shared one."""

import asyncio

import asyncpg
import pytest

from shared.db import migrate
from shared.service import Service
from shared.settings import ServiceSettings
from tests.conftest import eventually
from tests.support.events import make_event
from tests.support.kafka import committed_offsets, produce
from tests.support.private_postgres import PrivateCluster

EVENTS = 150
DOWN_S = 8  # longer than the few seconds of retries the inbox allowed before dead-lettering


@pytest.fixture
async def cluster():
    cluster = PrivateCluster()
    try:
        await asyncio.to_thread(cluster.init)
        await asyncio.to_thread(cluster.start)
        yield cluster
    finally:
        await asyncio.to_thread(cluster.destroy)


async def count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_an_immediate_restart_under_a_consumer_loses_nothing(cluster, kafka, topic):
    await migrate(cluster.dsn)
    await count(cluster.dsn, "CREATE TABLE effects (event_id text NOT NULL) ")
    service = Service(
        ServiceSettings(service_name="restarttest", database_url=cluster.dsn, kafka_bootstrap=kafka, db_pool_max=4),
        topics={},
    )

    @service.consume(topic, "effects")
    async def record(conn, event):
        await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", event.id)
        await asyncio.sleep(0.01)  # keep the consumer busy while the server goes away

    events = [make_event(f"inv_{i % 7}", i) for i in range(EVENTS)]
    await service.start()
    try:
        await produce(kafka, topic, events)

        async def some_applied():
            return await count(cluster.dsn, "SELECT count(*) FROM effects") >= 20

        await eventually(some_applied, timeout=60)
        await asyncio.to_thread(cluster.stop, "immediate")
        await asyncio.sleep(DOWN_S)
        while_down = await service.failures()  # /ready's body, honest meanwhile
        await asyncio.to_thread(cluster.start)

        async def all_applied():
            return await count(cluster.dsn, "SELECT count(DISTINCT event_id) FROM effects") == EVENTS

        await eventually(all_applied, timeout=90, interval=0.5)

        async def offsets_committed():
            return sum((await committed_offsets(kafka, "restarttest.effects", topic)).values()) == EVENTS

        await eventually(offsets_committed, timeout=30)
        after = await service.failures()
    finally:
        await service.stop()
    assert while_down["deadLetters"]["parked"] is None  # not known while the database is away
    assert [r["name"] for r in while_down["retrying"]] == ["restarttest.effects"]
    assert after == {"deadLetters": {"parked": 0}, "retrying": []}
    assert await count(cluster.dsn, "SELECT count(*) FROM effects") == EVENTS  # none twice
    assert await count(cluster.dsn, "SELECT count(*) FROM dead_letters") == 0
