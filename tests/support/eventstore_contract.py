"""The event store's contract, one set of tests for every store: the PostgreSQL one
(tests/integration/test_eventstore.py) and the in-memory one (tests/unit/test_memory_store.py).

A subclass provides three fixtures: `store` (topics {"thing": "test.things"}), `pool` over it,
and `outbox(pool) -> list of (event id, topic, key)` in the order written.
"""

import asyncio
from datetime import timedelta

import pytest

from shared.eventstore import ConcurrencyError
from tests.support.events import make_event


async def append(store, pool, stream, expected, *events, key=None):
    async with pool.acquire() as conn, conn.transaction():
        return await store.append(conn, "thing", stream, expected, list(events), key=key)


async def read(store, pool, stream, **kw):
    async with pool.acquire() as conn:
        return await store.read_stream(conn, stream, **kw)


class EventStoreContract:
    async def test_holds_on_a_stream_share_or_exclude_until_the_transaction_ends(self, store, pool):
        order: list[str] = []

        async def holding(name: str, stream: str, exclusive: bool, pause: float) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await store.hold(conn, stream, exclusive=exclusive)
                order.append(f"{name} in")
                await asyncio.sleep(pause)
                order.append(f"{name} out")

        async def start(*args) -> asyncio.Task:
            task = asyncio.create_task(holding(*args))
            await asyncio.sleep(0.03)
            return task

        tasks = [
            await start("shared 1", "h1", False, 0.2),
            await start("shared 2", "h1", False, 0.1),  # beside the first
            await start("exclusive", "h1", True, 0.1),  # after both
            await start("other stream", "h2", True, 0.01),  # not held by anyone
        ]
        while "exclusive in" not in order:
            await asyncio.sleep(0.01)
        tasks.append(await start("shared 3", "h1", False, 0.01))  # waits for the exclusive one
        await asyncio.gather(*tasks)
        at = order.index
        assert at("shared 2 in") < at("shared 1 out")
        assert at("exclusive in") > max(at("shared 1 out"), at("shared 2 out"))
        assert at("other stream out") < at("shared 1 out")
        assert at("shared 3 in") > at("exclusive out")

    async def test_append_and_read_stream_in_order(self, store, pool):
        assert await append(store, pool, "s1", 0, make_event("s1", 1), make_event("s1", 2)) == 2
        assert await append(store, pool, "s1", 2, make_event("s1", 3)) == 3
        stored = await read(store, pool, "s1")
        assert [s.version for s in stored] == [1, 2, 3]
        assert [s.event.data["n"] for s in stored] == [1, 2, 3]
        assert [s.event.sequence for s in stored] == ["1", "2", "3"]
        assert {s.stream_type for s in stored} == {"thing"}
        assert await read(store, pool, "nothing-here") == []

    async def test_wrong_expected_version_is_a_typed_conflict(self, store, pool, outbox):
        await append(store, pool, "s1", 0, make_event("s1"))
        with pytest.raises(ConcurrencyError) as err:
            await append(store, pool, "s1", 0, make_event("s1"))
        assert (err.value.expected, err.value.actual) == (0, 1)
        with pytest.raises(ConcurrencyError):
            await append(store, pool, "s1", 5, make_event("s1"))  # ahead of the stream is stale too
        assert len(await read(store, pool, "s1")) == 1  # nothing overwritten
        assert len(await outbox(pool)) == 1

    async def test_concurrent_appends_to_one_stream_exactly_one_wins(self, store, pool, outbox):
        await append(store, pool, "hot", 0, make_event("hot"))
        results = await asyncio.gather(
            *(append(store, pool, "hot", 1, make_event("hot", i)) for i in range(10)), return_exceptions=True
        )
        winners = [r for r in results if r == 2]
        conflicts = [r for r in results if isinstance(r, ConcurrencyError)]
        assert len(winners) == 1 and len(conflicts) == 9
        assert [s.version for s in await read(store, pool, "hot")] == [1, 2]
        assert len(await outbox(pool)) == 2  # losers wrote no outbox rows

    async def test_append_outside_a_transaction_is_refused(self, store, pool):
        async with pool.acquire() as conn:
            with pytest.raises(RuntimeError):
                await store.append(conn, "thing", "s", 0, [make_event("s")])

    async def test_nothing_of_a_rolled_back_transaction_remains(self, store, pool, outbox):
        class Abandoned(Exception):
            pass

        async def append_then_fail():
            async with pool.acquire() as conn, conn.transaction():
                await store.append(conn, "thing", "gone", 0, [make_event("gone")])
                assert len(await store.read_stream(conn, "gone")) == 1  # the transaction sees its own write
                raise Abandoned

        with pytest.raises(Abandoned):
            await append_then_fail()
        assert await read(store, pool, "gone") == []
        assert await outbox(pool) == []
        assert await append(store, pool, "gone", 0, make_event("gone")) == 1  # the version is free again

    async def test_outbox_rows_name_the_topic_and_key_in_order(self, store, pool, outbox):
        a, b = make_event("s1", 1), make_event("s1", 2)
        await append(store, pool, "s1", 0, a, b, key="inv_1")
        c = make_event("s2", 3)
        await append(store, pool, "s2", 0, c)
        assert await outbox(pool) == [
            (a.id, "test.things", "inv_1"),
            (b.id, "test.things", "inv_1"),
            (c.id, "test.things", "s2"),
        ]

    async def test_an_empty_append_changes_nothing(self, store, pool, outbox):
        assert await append(store, pool, "s", 0) == 0
        assert await read(store, pool, "s") == [] and await outbox(pool) == []

    async def test_read_all_after_a_position_and_as_of(self, store, pool):
        first = make_event("a", 1)
        later = make_event("a", 2).model_copy(update={"time": first.time + timedelta(hours=1)})
        await append(store, pool, "a", 0, first, later)
        await append(store, pool, "b", 0, make_event("b", 3))
        async with pool.acquire() as conn:
            everything = await store.read_all(conn)
            assert [s.stream_id for s in everything] == ["a", "a", "b"]
            after = await store.read_all(conn, after=everything[0].checkpoint)
            assert [s.event.data["n"] for s in after] == [2, 3]
            assert [s.event.data["n"] for s in await store.read_all(conn, limit=2)] == [1, 2]
            heads = await store.read_heads(conn, after=everything[0].checkpoint)
            assert [(h.checkpoint, h.stream_id, h.event_type) for h in heads] == [
                (s.checkpoint, s.stream_id, s.event.type) for s in after
            ]
            picked = await store.read_positions(conn, [everything[2].position, everything[0].position])
            assert [s.event.data["n"] for s in picked] == [1, 3]
            assert await store.last_position(conn) == everything[-1].position
            as_of = await store.read_stream(conn, "a", as_of=first.time + timedelta(minutes=1))
            assert [s.event.data["n"] for s in as_of] == [1]

    async def test_an_event_that_commits_late_is_never_skipped(self, store, pool):
        """Appends do not wait for each other; a reader takes an event only once every transaction
        that could still commit before it has finished, so moving a checkpoint past what it read
        can never skip the slow transaction's event."""
        slow = await pool.acquire()
        tx = slow.transaction()
        await tx.start()
        await store.append(slow, "thing", "slow", 0, [make_event("slow")])
        await asyncio.wait_for(append(store, pool, "fast", 0, make_event("fast")), 5)  # no global lock to wait for
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
