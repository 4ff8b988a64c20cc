"""The timer engine: fires due timers, each exactly once, however many dunning processes run.

Each timer fires in its own transaction that first locks its invoice's row with SKIP LOCKED:
another process working on the same invoice makes this one move on instead of waiting or firing
twice, and the timer's pending state is re-read under the lock. The events it causes, the
timer's `fired_at` and the outbox rows commit together, so a crash either fires a timer
completely or not at all. Timers are taken in due order, so after downtime every missed timer
fires on start, oldest first (and always in order within an invoice).
"""

import asyncio

import asyncpg
import structlog

from shared.failpoints import failpoint
from shared.logs import bind_correlation, get_logger
from shared.wakeup import Wakeup

from . import repository as repo
from .clock import Clock
from .handlers import DunningHandlers

log = get_logger(__name__)


class TimerEngine:
    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        handlers: DunningHandlers,
        clock: Clock,
        *,
        poll_interval: float = 0.5,
        batch_size: int = 100,
    ) -> None:
        self.dsn, self.pool, self.handlers, self.clock = dsn, pool, handlers, clock
        self.poll_interval, self.batch_size = poll_interval, batch_size
        self.fired = 0
        self._wakeup = Wakeup(poll_interval)

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        """Run until cancelled; woken early by new timers, test clocks moving, or a ManualClock."""
        listener = await asyncpg.connect(self.dsn)
        try:
            await self._wakeup.listen(listener, repo.TIMERS_CHANNEL)
            log.info("timer engine started")
            while True:
                try:
                    await self.fire_due()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # noqa: BLE001 - database away: keep the timers, try again
                    log.error("timer engine failed, retrying", error=repr(exc))
                await self._wakeup.wait()
        finally:
            await listener.close()

    async def fire_due(self) -> int:
        """Fire every timer due now, in due order; returns how many this process fired.

        Each candidate fires its invoice's earliest due timer, which is the candidate itself
        unless another process fired it meanwhile."""
        total = 0
        while True:
            fired = 0
            for invoice_id in await repo.due_invoices(self.pool, self.clock.now(), self.batch_size):
                try:
                    fired += await self.fire_next(invoice_id)
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # noqa: BLE001 - one bad timer must not hold up every other invoice
                    log.error("timer failed, will retry", invoice_id=invoice_id, error=repr(exc))
            total += fired
            if not fired:  # nothing due, or everything due is being fired by another process
                return total

    async def fire_next(self, invoice_id: str) -> int:
        """Fire the invoice's earliest due timer; 0 if none is due or another process has it."""
        with structlog.contextvars.bound_contextvars():
            async with self.pool.acquire() as conn, conn.transaction():
                row = await repo.try_lock_invoice(conn, invoice_id)
                if row is None:
                    return 0
                now = await self.handlers.now(conn, row["tenant_id"])
                timer = await repo.next_due_timer(conn, invoice_id, now)
                if timer is None:
                    return 0
                bind_correlation(timer["correlation_id"])
                structlog.contextvars.bind_contextvars(invoice_id=invoice_id, timer=timer["key"])
                await self.handlers.fire(conn, row, timer, now)
                await repo.mark_fired(conn, timer["id"], now)
            lateness = (now - timer["fire_at"]).total_seconds()
            log.info("timer fired", kind=timer["kind"], fire_at=timer["fire_at"].isoformat(), late_s=round(lateness, 3))
            self.fired += 1
            failpoint("dunning.after_timer_fired")
            return 1
