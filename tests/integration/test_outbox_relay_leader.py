"""Two outbox relay processes on one database: one leads (advisory lock), the other waits; kill
the leader and the other takes over and publishes everything, each event once, in order."""

import json

from shared.envelope import CloudEvent
from shared.eventstore import EventStore
from tests.conftest import eventually
from tests.support.events import make_event
from tests.support.kafka import read_topic
from tests.support.processes import json_log_lines, output, spawn, stop


def leading(proc) -> bool:
    return any(line.get("event") == "outbox relay leading" for line in json_log_lines(proc.log_path))


async def test_when_the_leader_dies_the_other_relay_publishes_everything_once_in_order(pool, topic, kafka, database):
    store = EventStore({"thing": topic})
    stream = "inv_leader"  # one key: one partition, so the topic's order is the publish order
    events = [make_event(stream, i) for i in range(20)]

    async def append(batch, version):
        async with pool.acquire() as conn, conn.transaction():
            await store.append(conn, "thing", stream, version, batch)

    async def unpublished() -> int:
        return await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")

    relays = [await spawn("tests.support.relay_proc", database, kafka) for _ in range(2)]
    try:

        async def one_leads():
            leaders = [r for r in relays if leading(r)]
            return leaders if leaders else None

        [leader] = await eventually(one_leads, timeout=60)
        [follower] = [r for r in relays if r is not leader]

        async def follower_waits_for_the_lock():
            # The follower keeps asking for the lock (the leader's connection has moved on to LISTEN);
            # killing the leader before the follower got this far would prove nothing.
            return (
                await pool.fetchval(
                    """SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                   AND query LIKE 'SELECT pg_try_advisory_lock%' AND pid <> pg_backend_pid()"""
                )
                == 1
            )

        await eventually(follower_waits_for_the_lock, timeout=60)

        await append(events[:10], 0)
        await eventually(lambda: _is(unpublished(), 0), timeout=30)  # the leader published and marked them
        assert not leading(follower)

        assert follower.returncode is None, output(follower)
        leader.kill()  # as a crash would: its session (and the advisory lock) dies with it
        await leader.wait()
        await append(events[10:], 10)

        await eventually(lambda: _true(leading(follower)), timeout=60)
        await eventually(lambda: _is(unpublished(), 0), timeout=60)  # ...and the follower published the rest
        assert follower.returncode is None, output(follower)
    finally:
        for r in relays:
            await stop(r)

    records = await read_topic(kafka, topic, at_least=20)
    published = [CloudEvent.model_validate_json(r.value).id for r in records]
    assert published == [e.id for e in events], json.dumps(published)  # each once, in append order


async def _is(value, expected) -> bool:
    return await value == expected


async def _true(value: bool) -> bool:
    return value
