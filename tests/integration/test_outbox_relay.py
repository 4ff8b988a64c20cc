"""The outbox relay against real PostgreSQL and Kafka."""

import asyncio
import itertools

import pytest

from shared.envelope import CloudEvent
from shared.eventstore import EventStore
from shared.inbox import Delivery, InboxConsumer
from shared.outbox import OutboxRelay, make_producer
from tests.conftest import eventually
from tests.support.events import make_event
from tests.support.kafka import read_topic
from tests.support.processes import output, spawn


@pytest.fixture
def store(topic):
    return EventStore({"thing": topic})


async def append(pool, store, stream, *events):
    async with pool.acquire() as conn, conn.transaction():
        await store.append(conn, "thing", stream, 0, list(events))


async def unpublished(pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")


async def test_publishes_in_order_keyed_by_stream(pool, store, topic, kafka, database):
    events = [make_event("inv_a", i) for i in range(5)]
    await append(pool, store, "inv_a", *events)
    relay = OutboxRelay(database, pool, kafka)
    producer = make_producer(kafka)
    await producer.start()
    try:
        assert await relay.publish_batch(producer) == 5
    finally:
        await producer.stop()
    records = await read_topic(kafka, topic, at_least=5)
    assert [CloudEvent.model_validate_json(r.value).id for r in records] == [e.id for e in events]
    assert {r.key for r in records} == {b"inv_a"} and len({r.partition for r in records}) == 1
    assert dict(records[0].headers)["content-type"].startswith(b"application/cloudevents+json")
    assert await unpublished(pool) == 0


async def test_transactions_committing_out_of_order_are_both_published(pool, topic, kafka, database):
    """Rows written without the append lock (the worst case): the later-numbered transaction
    commits and is published first; the earlier one commits afterwards and is not skipped."""
    relay = OutboxRelay(database, pool, kafka)
    early_event, late_event = make_event("k", 1), make_event("k", 2)  # one key: one partition
    early = await pool.acquire()
    tx = early.transaction()
    await tx.start()
    await early.execute(
        "INSERT INTO outbox (event_id, topic, key, payload) VALUES ($1, $2, 'k', $3)",
        early_event.id,
        topic,
        early_event.to_json(),
    )
    await pool.execute(
        "INSERT INTO outbox (event_id, topic, key, payload) VALUES ($1, $2, 'k', $3)",
        late_event.id,
        topic,
        late_event.to_json(),
    )
    producer = make_producer(kafka)
    await producer.start()
    try:
        assert await relay.publish_batch(producer) == 1  # only the committed, later-numbered row
        await tx.commit()
        await pool.release(early)
        assert await relay.publish_batch(producer) == 1  # the late committer is still found
    finally:
        await producer.stop()
    records = await read_topic(kafka, topic, at_least=2)
    assert [CloudEvent.model_validate_json(r.value).id for r in records] == [late_event.id, early_event.id]


async def test_relay_killed_before_marking_republishes_and_inbox_drops_duplicates(pool, store, topic, kafka, database):
    events = [make_event(f"inv_{i}", i) for i in range(3)]
    for e in events:
        await append(pool, store, e.subject, e)
    crashing = await spawn("tests.support.relay_proc", database, kafka, failpoints="relay.after_publish")
    assert await asyncio.wait_for(crashing.wait(), 60) == 137, output(crashing)
    assert await unpublished(pool) == 3  # published but never marked
    assert len(await read_topic(kafka, topic, at_least=3)) == 3

    relay = asyncio.create_task(OutboxRelay(database, pool, kafka, poll_interval=0.1).run())
    try:
        await eventually(lambda: _none_left(pool))
    finally:
        relay.cancel()
    records = await read_topic(kafka, topic, at_least=6)
    assert len(records) == 6  # every event published twice

    await pool.execute("CREATE TABLE effects (event_id text NOT NULL)")

    async def effect(conn, event):
        await conn.execute("INSERT INTO effects VALUES ($1)", event.id)

    consumer = InboxConsumer("test.effects", effect)
    outcomes = [await consumer.process(pool, r.value, Delivery(topic, r.partition, r.offset)) for r in records]
    assert outcomes.count(True) == 3 and outcomes.count(False) == 3
    assert sorted(await pool.fetchval("SELECT array_agg(event_id) FROM effects")) == sorted(e.id for e in events)


async def _none_left(pool) -> bool:
    return await unpublished(pool) == 0


async def test_relay_backs_off_while_kafka_is_down_and_catches_up(pool, store, topic, kafka, database):
    kafka_up = asyncio.Event()
    loop = asyncio.get_running_loop()
    attempts: list[float] = []  # when each connection attempt started

    def producer_factory(bootstrap):
        # While "down", the relay is pointed at a port where no broker listens.
        attempts.append(loop.time())
        return make_producer(bootstrap if kafka_up.is_set() else "127.0.0.1:9")

    relay = OutboxRelay(database, pool, kafka, poll_interval=0.1, max_backoff=1.0, producer_factory=producer_factory)
    task = asyncio.create_task(relay.run())
    try:
        await append(pool, store, "inv_down", make_event("inv_down", 1))

        async def six_attempts():
            return len(attempts) >= 6

        await eventually(six_attempts, timeout=30)
        assert relay.published == 0 and await unpublished(pool) == 1
        # Backing off: the waits between attempts double from 0.5 s up to max_backoff (1 s).
        # Sleeps never end early, so the lower bounds are exact whatever the load (0.05 s for
        # the clock's resolution); without the cap five waits would take 15.5 s, not 4.5 s.
        gaps = [b - a for a, b in itertools.pairwise(attempts[:6])]
        assert all(gap >= least - 0.05 for gap, least in zip(gaps, [0.5, 1.0, 1.0, 1.0, 1.0], strict=False)), gaps
        assert sum(gaps) < 4.5 + 10, gaps  # capped (10 s of margin for a loaded machine)
        kafka_up.set()
        await append(pool, store, "inv_up", make_event("inv_up", 2))
        await eventually(lambda: _none_left(pool))
    finally:
        task.cancel()
    records = await read_topic(kafka, topic, at_least=2)
    assert sorted(r.key for r in records) == [b"inv_down", b"inv_up"]
