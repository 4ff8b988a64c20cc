"""Test clocks of test worlds (like Stripe's): while a test world has one, dunning lives at the
clock's frozen time for that world; advancing it fires everything that falls due on the way,
in order, so a person can watch an invoice go overdue and through its retries in a demo."""

from collections.abc import Callable
from datetime import datetime

import asyncpg

from shared import auth
from shared.errors import Conflict, NotFound, Refused
from shared.ids import new_id

from . import repository as repo
from .clock import Clock, iso


def _view(row: asyncpg.Record, due_now: int) -> dict:
    return {
        "id": row["id"],
        "object": "test_clock",
        "livemode": auth.livemode(row["tenant_id"]),
        "name": row["name"],
        "frozenTime": iso(row["frozen_time"]),
        # advancing until every timer due by frozenTime has fired
        "status": "advancing" if due_now else "ready",
        "createdAt": iso(row["created_at"]),
    }


class TestClocks:
    __test__ = False  # not a pytest class

    def __init__(self, pool_of, clock: Clock) -> None:
        self._pool_of, self.clock = pool_of, clock

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool_of()

    async def _row(self, conn, tenant_id: str, clock_id: str, *, lock: bool = False) -> asyncpg.Record:
        row = await repo.clock_row(conn, tenant_id, clock_id, lock=lock)
        if row is None:
            raise NotFound("test_clock", clock_id)
        return row

    async def create(self, tenant_id: str, *, name: str | None, frozen_time: datetime | None) -> dict:
        at = (frozen_time or self.clock.now()).replace(microsecond=0)
        now = self.clock.now()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await repo.insert_clock(conn, new_id("clock"), tenant_id, name, at, now)
            if row is None:
                raise Conflict(
                    "test_clock_exists", "This tenant already has a test clock: advance it, or delete it first."
                )
            await repo.notify_timers(conn)
            return _view(row, await repo.due_timers(conn, tenant_id, at))

    async def list(self, tenant_id: str) -> dict:
        rows = await repo.clocks_of(self.pool, tenant_id)
        return {"data": [_view(r, await repo.due_timers(self.pool, tenant_id, r["frozen_time"])) for r in rows]}

    async def get(self, tenant_id: str, clock_id: str) -> dict:
        row = await self._row(self.pool, tenant_id, clock_id)
        return _view(row, await repo.due_timers(self.pool, tenant_id, row["frozen_time"]))

    async def advance(self, tenant_id: str, clock_id: str, target: Callable[[datetime], datetime]) -> dict:
        """Move the clock to `target(current frozen time)`, never backwards."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._row(conn, tenant_id, clock_id, lock=True)
            to = target(row["frozen_time"])
            if to < row["frozen_time"]:
                raise Refused(
                    "test_clock_backwards",
                    f"A test clock only moves forward; it is at {iso(row['frozen_time'])}.",
                    field="frozenTime",
                )
            row = await repo.move_clock(conn, clock_id, to, self.clock.now())
            await repo.notify_timers(conn)
            return _view(row, await repo.due_timers(conn, tenant_id, to))

    async def delete(self, tenant_id: str, clock_id: str) -> dict:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._row(conn, tenant_id, clock_id, lock=True)
            await repo.delete_clock(conn, clock_id)
            await repo.notify_timers(conn)
        return {"id": clock_id, "object": "test_clock", "livemode": auth.livemode(tenant_id), "deleted": True}
