"""The event store against a real PostgreSQL."""

import asyncio
from datetime import timedelta

import pytest

from shared.eventstore import ConcurrencyError, EventStore
from tests.support.events import make_event

store = EventStore({"thing": "test.things"})


async def append(pool, stream, expected, *events):
    async with pool.acquire() as conn, conn.transaction():
        return await store.append(conn, "thing", stream, expected, list(events))


async def test_append_and_read_stream_in_order(pool):
    assert await append(pool, "s1", 0, make_event("s1", 1), make_event("s1", 2)) == 2
    assert await append(pool, "s1", 2, make_event("s1", 3)) == 3
    async with pool.acquire() as conn:
        stored = await store.read_stream(conn, "s1")
    assert [s.version for s in stored] == [1, 2, 3]
    assert [s.event.data["n"] for s in stored] == [1, 2, 3]
    assert [s.event.sequence for s in stored] == ["1", "2", "3"]


async def test_wrong_expected_version_is_a_typed_conflict(pool):
    await append(pool, "s1", 0, make_event("s1"))
    with pytest.raises(ConcurrencyError) as err:
        await append(pool, "s1", 0, make_event("s1"))
    assert (err.value.expected, err.value.actual) == (0, 1)
    async with pool.acquire() as conn:
        assert len(await store.read_stream(conn, "s1")) == 1  # nothing overwritten


async def test_concurrent_appends_to_one_stream_exactly_one_wins(pool):
    await append(pool, "hot", 0, make_event("hot"))
    results = await asyncio.gather(
        *(append(pool, "hot", 1, make_event("hot", i)) for i in range(10)), return_exceptions=True
    )
    winners = [r for r in results if r == 2]
    conflicts = [r for r in results if isinstance(r, ConcurrencyError)]
    assert len(winners) == 1 and len(conflicts) == 9
    async with pool.acquire() as conn:
        assert [s.version for s in await store.read_stream(conn, "hot")] == [1, 2]
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 2  # losers wrote no outbox rows


async def test_append_outside_a_transaction_is_refused(pool):
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            await store.append(conn, "thing", "s", 0, [make_event("s")])


async def test_read_all_after_a_position_and_as_of(pool):
    first = make_event("a", 1)
    later = make_event("a", 2).model_copy(update={"time": first.time + timedelta(hours=1)})
    await append(pool, "a", 0, first, later)
    await append(pool, "b", 0, make_event("b", 3))
    async with pool.acquire() as conn:
        everything = await store.read_all(conn)
        assert [s.stream_id for s in everything] == ["a", "a", "b"]
        after = await store.read_all(conn, after=everything[0].checkpoint)
        assert [s.event.data["n"] for s in after] == [2, 3]
        as_of = await store.read_stream(conn, "a", as_of=first.time + timedelta(minutes=1))
        assert [s.event.data["n"] for s in as_of] == [1]


async def test_an_event_that_commits_late_is_never_skipped(pool):
    """Appends do not wait for each other; a reader takes an event only once every transaction
    that could still commit before it has finished, so moving a checkpoint past what it read can
    never skip the slow transaction's event."""
    slow = await pool.acquire()
    tx = slow.transaction()
    await tx.start()
    await store.append(slow, "thing", "slow", 0, [make_event("slow")])
    await asyncio.wait_for(append(pool, "fast", 0, make_event("fast")), 5)  # no global lock to wait for
    async with pool.acquire() as conn:
        assert await store.read_all(conn) == []  # "fast" waits behind "slow", still running
        assert await store.has_unreadable(conn)
    await tx.commit()
    await pool.release(slow)
    async with pool.acquire() as conn:
        everything = await store.read_all(conn)
        assert [s.stream_id for s in everything] == ["slow", "fast"]
        assert not await store.has_unreadable(conn)
        assert await store.read_all(conn, after=everything[-1].checkpoint) == []
