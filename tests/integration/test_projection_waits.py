"""A transaction left open anywhere in the cluster holds committed events back from every
projection (the read cut-off is the oldest running transaction). The runner waits it out with a
backoff, not a 10 ms poll, names the transaction in its log, and applies the events once it ends."""

import asyncio

from shared import projections
from shared.projections import ProjectionRunner
from tests.conftest import eventually
from tests.integration.test_dead_letters import append, ledger
from tests.support.dead_letters import LEDGER_TABLE, Ledger, store


class Log:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict]] = []

    def warning(self, message: str, **facts) -> None:
        self.warnings.append((message, facts))

    def error(self, message: str, **facts) -> None: ...

    info = error


async def test_a_long_transaction_is_waited_out_with_a_backoff_and_named(pool, database, monkeypatch):
    await pool.execute(LEDGER_TABLE)
    events, looks, log = store(), 0, Log()
    has_unreadable = events.has_unreadable

    async def counted(conn):
        nonlocal looks
        looks += 1
        return await has_unreadable(conn)

    monkeypatch.setattr(events, "has_unreadable", counted)
    monkeypatch.setattr(projections, "log", log)
    monkeypatch.setattr(projections, "HELD_BACK_LOG_EVERY_S", 0.5)
    slow = await pool.acquire()
    tx = slow.transaction()
    await tx.start()
    slow_pid = await slow.fetchval("SELECT pg_backend_pid()")
    await slow.fetchval("SELECT pg_current_xact_id()")  # holds a transaction id: later commits wait
    task = asyncio.create_task(ProjectionRunner(database, pool, events, [Ledger()], poll_interval=0.1).run())
    try:
        await append(pool, "acct_held", "ten_a", 5)  # committed, but behind the open transaction
        await asyncio.sleep(3)
        assert await ledger(pool) == {}
        assert looks < 40, f"{looks} looks in 3 s: polling, not backing off"  # a 10 ms poll makes ~300
        held = [facts for message, facts in log.warnings if message == "projections held back by an open transaction"]
        # Other databases of the server have their own short transactions; ours is soon the oldest.
        assert any(facts["pid"] == slow_pid and facts["age_s"] >= 1 for facts in held), held
        await tx.rollback()
        await pool.release(slow)
        slow = None

        async def applied():
            return await ledger(pool) == {"acct_held": 5}

        await eventually(applied, timeout=5)
    finally:
        task.cancel()
        if slow is not None:
            await tx.rollback()
            await pool.release(slow)
