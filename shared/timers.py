"""Durable timers: work a service owes at a moment, kept in its own database and fired at least
once, in due order, by any number of its processes.

`schedule` writes a timer in the caller's transaction (so it exists exactly when the decision
that needs it commits). `TimerRunner` fires due timers: it claims them with SKIP LOCKED, so two
processes never fire the same one, and only a subject's earliest pending timer, so one
aggregate's timers fire in due order however many processes run. Each kind's handler runs in a
savepoint of the claiming transaction; its writes (events, outbox rows) and the timer's
`fired_at` commit together, so in effect a timer fires exactly once. A handler that fails is
retried with backoff (holding back that subject's later timers), and never holds up another
subject's.

Time is the tenant's: a test world with a test clock (tenant_clocks) is at its frozen time, so
advancing the clock fires everything that falls due on the way, in order. A handler receives the
moment the timer was due, which is the moment its effects belong to (a renewal on its period's
boundary, however late it fires).
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from shared.failures import is_transient
from shared.logs import get_logger
from shared.wakeup import Wakeup

log = get_logger(__name__)
CHANNEL = "billstream_timers"
PENDING = "fired_at IS NULL AND cancelled_at IS NULL"


def _pending(alias: str) -> str:
    return f"{alias}.fired_at IS NULL AND {alias}.cancelled_at IS NULL"


# Backoff after a failure: a transient one (a concurrent write, the database restarting) is
# retried within seconds, any other from a second up to an hour.
TRANSIENT_RETRY_S, RETRY_BASE_S, RETRY_MAX_S = 0.05, 1.0, 3600.0


@dataclass(frozen=True)
class Timer:
    key: str
    tenant_id: str
    kind: str
    subject: str
    fire_at: datetime
    payload: dict[str, Any]
    attempts: int


Handler = Callable[[asyncpg.Connection, Timer], Awaitable[None]]


def utcnow() -> datetime:
    return datetime.now(UTC)


async def schedule(
    conn: asyncpg.Connection,
    *,
    key: str,
    tenant_id: str,
    kind: str,
    subject: str,
    fire_at: datetime,
    payload: dict[str, Any] | None = None,
) -> None:
    """Set the timer `key` (in the caller's transaction): new, or moved while still pending; a
    timer that fired or was cancelled stays as it is."""
    await conn.execute(
        f"""INSERT INTO durable_timers (key, tenant_id, kind, subject, fire_at, payload)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb)
            ON CONFLICT (key) DO UPDATE SET fire_at = EXCLUDED.fire_at, payload = EXCLUDED.payload
            WHERE {_pending("durable_timers")}""",
        key,
        tenant_id,
        kind,
        subject,
        fire_at,
        json.dumps(payload or {}),
    )
    await conn.execute("SELECT pg_notify($1, '')", CHANNEL)


async def cancel(conn: asyncpg.Connection, key: str) -> None:
    await conn.execute(f"UPDATE durable_timers SET cancelled_at = now() WHERE key = $1 AND {PENDING}", key)


async def tenant_now(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, clock: Callable[[], datetime]
) -> datetime:
    """The tenant's time: its test clock's, or the clock's."""
    frozen = await conn.fetchval("SELECT frozen_time FROM tenant_clocks WHERE tenant_id = $1", tenant_id)
    return frozen or clock()


async def pending(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, *, due_by: datetime | None = None) -> int:
    """How many of the tenant's timers have not fired yet (by `due_by`, if given)."""
    return int(
        await conn.fetchval(
            f"""SELECT count(*) FROM durable_timers WHERE tenant_id = $1 AND {PENDING}
                AND ($2::timestamptz IS NULL OR fire_at <= $2)""",
            tenant_id,
            due_by,
        )
    )


# Due timers, oldest first, each its subject's earliest pending one; a tenant with a test clock is
# due by its frozen time, a timer that failed not before its retry_at.
_CLAIM = f"""
SELECT t.key, t.tenant_id, t.kind, t.subject, t.fire_at, t.payload, t.attempts
FROM durable_timers t LEFT JOIN tenant_clocks c ON c.tenant_id = t.tenant_id
WHERE {_pending("t")} AND t.fire_at <= coalesce(c.frozen_time, $1) AND (t.retry_at IS NULL OR t.retry_at <= $1)
  AND NOT EXISTS (SELECT 1 FROM durable_timers e WHERE e.subject = t.subject AND {_pending("e")}
                  AND (e.fire_at, e.key) < (t.fire_at, t.key))
ORDER BY t.fire_at, t.key
LIMIT $2
FOR UPDATE OF t SKIP LOCKED
"""


class TimerRunner:
    """Fires the service's due timers, `handlers` by kind, until cancelled."""

    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        handlers: dict[str, Handler],
        *,
        clock: Callable[[], datetime] = utcnow,
        poll_interval: float = 1.0,
        batch_size: int = 100,
    ) -> None:
        self.dsn, self.pool, self.handlers, self.clock = dsn, pool, handlers, clock
        self.batch_size = batch_size
        self.fired = 0
        self._wakeup = Wakeup(poll_interval)

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        listener = await asyncpg.connect(self.dsn)
        try:
            await self._wakeup.listen(listener, CHANNEL)
            while True:
                try:
                    await self.fire_due()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # noqa: BLE001 - database away: the timers wait, try again
                    log.error("timer runner failed, retrying", error=repr(exc))
                await self._wakeup.wait()
        finally:
            await listener.close()

    async def fire_due(self) -> int:
        """Fire every timer due now, batch after batch (a timer a handler schedules that is
        already due fires in the next batch); returns how many fired."""
        total = 0
        while (fired := await self.fire_batch()) is not None:
            total += fired
        return total

    async def fire_batch(self) -> int | None:
        """One batch in one transaction; None when nothing was due (or all of it is claimed).
        A batch takes each subject's earliest timer only: the next comes in the next batch."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self.clock(), self.batch_size)
            if not rows:
                return None
            fired = 0
            for row in rows:
                timer = Timer(**{**dict(row), "payload": _payload(row["payload"])})
                fired += await self._fire(conn, timer)
            return fired

    async def _fire(self, conn: asyncpg.Connection, timer: Timer) -> int:
        handler = self.handlers.get(timer.kind)
        try:
            if handler is None:
                raise LookupError(f"no handler for timers of kind {timer.kind!r}")
            async with conn.transaction():  # a savepoint: a failing handler leaves no trace
                await handler(conn, timer)
                await conn.execute("UPDATE durable_timers SET fired_at = now() WHERE key = $1", timer.key)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - this timer waits and is retried; the others go on
            base, cap = (TRANSIENT_RETRY_S, 5.0) if is_transient(exc) else (RETRY_BASE_S, RETRY_MAX_S)
            retry_at = self.clock() + timedelta(seconds=min(base * 2**timer.attempts, cap))
            await conn.execute(
                "UPDATE durable_timers SET attempts = attempts + 1, last_error = $2, retry_at = $3 WHERE key = $1",
                timer.key,
                repr(exc)[:1000],
                retry_at,
            )
            log.warning(
                "timer failed, will retry", key=timer.key, kind=timer.kind, attempt=timer.attempts + 1, error=repr(exc)
            )
            return 0
        self.fired += 1
        return 1


def _payload(raw: Any) -> dict[str, Any]:
    return json.loads(raw) if isinstance(raw, str) else dict(raw or {})
