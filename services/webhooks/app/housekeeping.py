"""Keeps the delivery log, the kept events and the sent e-mails for a retention period (30 days
by default), then deletes them, so the tables do not grow for ever. Pending work is never deleted.
"""

import asyncio
from datetime import timedelta

import asyncpg

from shared.logs import get_logger

log = get_logger(__name__)


class Housekeeping:
    def __init__(self, pool: asyncpg.Pool, *, retention_days: int = 30, interval_s: float = 3600) -> None:
        self.pool, self.retention_days, self.interval_s = pool, retention_days, interval_s

    async def run(self) -> None:
        while True:
            await self.purge()
            await asyncio.sleep(self.interval_s)

    async def purge(self) -> dict[str, int]:
        keep = timedelta(days=self.retention_days)
        async with self.pool.acquire() as conn, conn.transaction():
            old = """SELECT delivery_id FROM webhook_deliveries
                      WHERE status <> 'pending' AND updated_at < now() - $1::interval"""
            attempts = await conn.execute(f"DELETE FROM webhook_attempts WHERE delivery_id IN ({old})", keep)
            deliveries = await conn.execute(f"DELETE FROM webhook_deliveries WHERE delivery_id IN ({old})", keep)
            events = await conn.execute(
                """DELETE FROM webhook_events e WHERE received_at < now() - $1::interval
                      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                                       WHERE d.event_id = e.event_id AND d.status = 'pending')""",
                keep,
            )
            emails = await conn.execute(
                """DELETE FROM customer_emails WHERE status <> 'pending'
                      AND created_at < now() - $1::interval""",
                keep,
            )
        counts = {
            name: int(status.split()[-1])
            for name, status in (
                ("attempts", attempts),
                ("deliveries", deliveries),
                ("events", events),
                ("emails", emails),
            )
        }
        if any(counts.values()):
            log.info("old webhook records purged", **counts)
        return counts
