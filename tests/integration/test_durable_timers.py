"""Durable timers (shared/timers.py) against a real PostgreSQL: each fires once however many
runners race for it, a subject's timers fire in due order, a failing handler is retried without
holding up anyone else, and a test world fires by its frozen clock."""

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from shared import timers
from shared.eventstore import ConcurrencyError

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def clock() -> datetime:
    return NOW


async def set_timers(pool, *specs: tuple[str, str, str, datetime]) -> None:
    """(key, tenant, subject, fire_at) each, of kind "note"."""
    async with pool.acquire() as conn, conn.transaction():
        for key, tenant, subject, fire_at in specs:
            await timers.schedule(conn, key=key, tenant_id=tenant, kind="note", subject=subject, fire_at=fire_at)


def recorder(fired: list[tuple[str, datetime]]):
    async def note(conn: asyncpg.Connection, timer: timers.Timer) -> None:
        await conn.execute("INSERT INTO notes (key) VALUES ($1)", timer.key)  # a PK: firing twice would fail
        fired.append((timer.key, timer.fire_at))

    return note


async def notes_table(pool) -> None:
    await pool.execute("CREATE TABLE notes (key text PRIMARY KEY)")


async def test_each_timer_fires_once_however_many_runners_race(pool, database):
    await notes_table(pool)
    specs = [(f"t{i}", "ten_a", f"subject_{i % 7}", NOW - timedelta(minutes=300 - i)) for i in range(300)]
    await set_timers(pool, *specs)
    fired: list[tuple[str, datetime]] = []
    runners = [
        timers.TimerRunner(database, pool, {"note": recorder(fired)}, clock=clock, batch_size=20) for _ in range(4)
    ]
    counts = await asyncio.gather(*(r.fire_due() for r in runners))
    assert sum(counts) == 300 and sorted(k for k, _ in fired) == sorted(k for k, *_ in specs)
    assert await pool.fetchval("SELECT count(*) FROM notes") == 300
    # Each subject's timers fired in due order, whichever runner took them.
    for subject in range(7):
        mine = [at for key, at in fired if int(key[1:]) % 7 == subject]
        assert mine == sorted(mine)
    # Scheduling a fired timer again does nothing.
    await set_timers(pool, ("t0", "ten_a", "subject_0", NOW))
    assert await runners[0].fire_due() == 0


async def test_a_pending_timer_moves_and_a_future_one_waits(pool, database):
    await notes_table(pool)
    fired: list[tuple[str, datetime]] = []
    runner = timers.TimerRunner(database, pool, {"note": recorder(fired)}, clock=clock)
    await set_timers(
        pool, ("later", "ten_a", "s", NOW + timedelta(hours=1)), ("moved", "ten_a", "s2", NOW + timedelta(days=1))
    )
    await set_timers(pool, ("moved", "ten_a", "s2", NOW - timedelta(seconds=1)))
    assert await runner.fire_due() == 1 and fired == [("moved", NOW - timedelta(seconds=1))]
    async with pool.acquire() as conn, conn.transaction():
        await timers.cancel(conn, "later")
    assert await timers.pending(pool, "ten_a") == 0


async def test_a_failing_timer_is_retried_and_holds_back_only_its_own_subject(pool, database):
    await notes_table(pool)
    fired: list[tuple[str, datetime]] = []
    note = recorder(fired)
    failures = {"bad-1": [RuntimeError("bug"), ConcurrencyError("sub_bad", 1, 2)]}

    async def flaky(conn, timer):
        if failures.get(timer.key):
            await conn.execute("INSERT INTO notes (key) VALUES ('written before failing')")
            raise failures[timer.key].pop(0)
        await note(conn, timer)

    now = [NOW]
    runner = timers.TimerRunner(database, pool, {"note": flaky}, clock=lambda: now[0])
    await set_timers(
        pool,
        ("bad-1", "ten_a", "sub_bad", NOW - timedelta(minutes=2)),
        ("bad-2", "ten_a", "sub_bad", NOW - timedelta(minutes=1)),
        ("good", "ten_b", "sub_good", NOW - timedelta(minutes=1)),
    )
    assert await runner.fire_due() == 1 and [k for k, _ in fired] == ["good"]  # bad-2 waits behind bad-1
    row = await pool.fetchrow("SELECT attempts, last_error, retry_at FROM durable_timers WHERE key = 'bad-1'")
    assert row["attempts"] == 1 and "bug" in row["last_error"] and row["retry_at"] == NOW + timedelta(seconds=1)
    assert await pool.fetchval("SELECT count(*) FROM notes WHERE key = 'written before failing'") == 0
    now[0] = NOW + timedelta(seconds=1)  # the retry is due; the concurrent write is retried within moments
    assert await runner.fire_due() == 0
    retry_at = await pool.fetchval("SELECT retry_at FROM durable_timers WHERE key = 'bad-1'")
    assert retry_at == now[0] + timedelta(seconds=timers.TRANSIENT_RETRY_S * 2)
    now[0] = retry_at
    assert await runner.fire_due() == 2 and [k for k, _ in fired] == ["good", "bad-1", "bad-2"]
    # Fired at the moment each was due, not when it finally ran.
    assert dict(fired)["bad-1"] == NOW - timedelta(minutes=2)


async def test_a_test_world_fires_by_its_frozen_clock(pool, database):
    await notes_table(pool)
    fired: list[tuple[str, datetime]] = []
    runner = timers.TimerRunner(database, pool, {"note": recorder(fired)}, clock=clock)
    frozen = NOW - timedelta(days=30)
    await pool.execute(
        "INSERT INTO tenant_clocks (tenant_id, frozen_time, version) VALUES ('ten_x_test', $1, 1)", frozen
    )
    await set_timers(
        pool,
        *[(f"month-{m}", "ten_x_test", "sub_1", frozen + timedelta(days=10 * m)) for m in (1, 2, 3, 4)],
        ("live", "ten_x", "sub_2", NOW - timedelta(days=1)),
    )
    assert await timers.tenant_now(pool, "ten_x_test", clock) == frozen
    assert await runner.fire_due() == 1 and fired == [("live", NOW - timedelta(days=1))]  # the live world is at NOW
    await pool.execute(
        "UPDATE tenant_clocks SET frozen_time = $1 WHERE tenant_id = 'ten_x_test'", frozen + timedelta(days=35)
    )
    assert await runner.fire_due() == 3
    assert [k for k, _ in fired] == ["live", "month-1", "month-2", "month-3"]
    assert await timers.pending(pool, "ten_x_test") == 1
