"""A consumer process killed after its transaction committed but before the Kafka offset
commit: the event comes back on restart and the inbox makes it a no-op."""

import asyncio
import uuid

from tests.conftest import eventually
from tests.support.events import make_event
from tests.support.kafka import committed_offsets, produce
from tests.support.processes import output, spawn, stop

# A consumer group of this run's own: a fixed one would carry the members and offsets of earlier
# runs (a killed member stays in the group until its session times out, delaying the rebalance).
NAME = f"crashtest-{uuid.uuid4().hex[:8]}"
GROUP = f"{NAME}.effects"


async def test_killed_before_offset_commit_has_no_double_effect(pool, topic, kafka, database):
    await pool.execute("CREATE TABLE effects (event_id text NOT NULL)")  # no key: doubles would show
    event = make_event("inv_crash", 1)
    await produce(kafka, topic, [event])

    crashing = await spawn(
        "tests.support.consumer_proc", database, kafka, topic, NAME, failpoints=f"consumer.after_commit:{GROUP}"
    )
    code = await asyncio.wait_for(crashing.wait(), 90)
    assert code == 137, output(crashing)
    assert await pool.fetchval("SELECT count(*) FROM effects") == 1
    assert await committed_offsets(kafka, GROUP, topic) == {}  # died before committing the offset

    restarted = await spawn("tests.support.consumer_proc", database, kafka, topic, NAME)
    try:

        async def offset_committed():
            return sum((await committed_offsets(kafka, GROUP, topic)).values()) == 1

        await eventually(offset_committed, timeout=60, interval=0.3)
    finally:
        await stop(restarted)
    assert await pool.fetchval("SELECT count(*) FROM effects") == 1
    assert await pool.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", GROUP) == 1


async def test_malformed_message_is_dead_lettered_and_does_not_block(pool, topic, kafka, database):
    await pool.execute("CREATE TABLE effects (event_id text NOT NULL)")
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{not json", key=b"k", partition=0)
    finally:
        await producer.stop()
    good = make_event("k", 2)
    await produce(kafka, topic, [good])
    proc = await spawn("tests.support.consumer_proc", database, kafka, topic, NAME)
    try:

        async def good_event_handled():
            return await pool.fetchval("SELECT count(*) FROM effects") == 1

        await eventually(good_event_handled, timeout=60, interval=0.3)
    finally:
        await stop(proc)
    row = await pool.fetchrow("SELECT consumer, payload, error FROM dead_letters")
    assert row["consumer"] == GROUP and row["payload"] == b"{not json" and "malformed" in row["error"]
