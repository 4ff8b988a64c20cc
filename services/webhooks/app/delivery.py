"""The delivery worker: claims due deliveries, POSTs them signed (Standard Webhooks), records
each attempt, and schedules retries. A claim is a lease: if the process dies mid-delivery the
lease runs out and another attempt is made, so delivery is at least once (receivers dedupe on
`webhook-id`). Each delivery runs in its own task, so a slow endpoint holds up no other.
"""

import asyncio
import random
import time
from datetime import UTC, datetime

import asyncpg
import httpx
from standardwebhooks.webhooks import Webhook

from shared.logs import bind_correlation, get_logger

from ..consumers.events import DELIVERY_CHANNEL

log = get_logger(__name__)

# Seconds to wait before attempt 2, 3, ...: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
RETRY_DELAYS = [5, 300, 1800, 7200, 18000, 36000, 36000]


def next_delay(attempts: int, retry_after: float | None = None) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones; None when exhausted."""
    if attempts > len(RETRY_DELAYS):
        return None
    base = RETRY_DELAYS[attempts - 1]
    delay = base * random.uniform(0.9, 1.1)  # jitter spreads retries of many failed deliveries
    return max(delay, retry_after or 0)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0)
    except ValueError:
        return None


class DeliveryWorker:
    def __init__(self, dsn: str, pool: asyncpg.Pool, *, timeout: float = 15.0,
                 concurrency: int = 50, lease_s: int = 60, poll_interval: float = 1.0) -> None:
        self.dsn, self.pool, self.timeout = dsn, pool, timeout
        self.lease_s, self.poll_interval = lease_s, poll_interval
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._wake = asyncio.Event()

    async def run(self) -> None:
        listener = await asyncpg.connect(self.dsn)
        tasks: set[asyncio.Task] = set()
        try:
            await listener.add_listener(DELIVERY_CHANNEL, lambda *_: self._wake.set())
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
                while True:
                    self._wake.clear()
                    free = self._concurrency - len(tasks)
                    claimed = await self.claim(free) if free else []
                    for row in claimed:
                        task = asyncio.create_task(self.attempt(client, row))
                        tasks.add(task)
                        task.add_done_callback(lambda t: (tasks.discard(t), self._wake.set()))
                    if len(claimed) < free:
                        try:
                            await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                        except TimeoutError:
                            pass
        finally:
            for task in tasks:
                task.cancel()
            await listener.close()

    async def claim(self, limit: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            """UPDATE webhook_deliveries d
                  SET next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
                 FROM (SELECT delivery_id FROM webhook_deliveries
                        WHERE status = 'pending' AND next_attempt_at <= now()
                        ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due,
                      webhook_endpoints e
                WHERE d.delivery_id = due.delivery_id AND e.endpoint_id = d.endpoint_id
            RETURNING d.delivery_id, d.correlation_id, d.event_id, d.event_type, d.payload, d.attempts, d.endpoint_id,
                      e.url, e.secret, e.enabled AND e.deleted_at IS NULL AS active""",
            limit,
            float(self.lease_s),
        )

    async def attempt(self, client: httpx.AsyncClient, d: asyncpg.Record) -> None:
        bind_correlation(d["correlation_id"])
        if not d["active"]:
            await self._finish(d, "failed", None, "endpoint disabled or deleted", 0)
            return
        signer = Webhook(d["secret"])
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "Billstream-Webhooks/1",
            "webhook-id": d["event_id"],
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(d["event_id"], now, d["payload"]),
        }
        started = time.perf_counter()
        status, error, retry_after = None, None, None
        try:
            response = await client.post(d["url"], content=d["payload"], headers=headers)
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        latency = int((time.perf_counter() - started) * 1000)
        attempts = d["attempts"] + 1
        log_kw = dict(delivery_id=d["delivery_id"], event_type=d["event_type"], status=status, latency_ms=latency, attempt=attempts)
        if status is not None and 200 <= status < 300:
            log.info("webhook delivered", **log_kw)
            await self._finish(d, "succeeded", status, None, latency)
        elif status == 410:  # the receiver says this endpoint is gone for good
            log.warning("webhook endpoint gone, disabling", **log_kw)
            await self._finish(d, "failed", status, "410 Gone: endpoint disabled", latency, disable=True)
        else:
            delay = next_delay(attempts, retry_after)
            log.warning("webhook attempt failed", error=error, retry_in_s=delay, **log_kw)
            if delay is None:
                await self._finish(d, "failed", status, error or f"HTTP {status}", latency)
            else:
                await self._retry(d, status, error or f"HTTP {status}", latency, delay)

    async def _record(self, conn: asyncpg.Connection, d, status, error, latency) -> None:
        await conn.execute(
            """INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms, error)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
            d["delivery_id"], d["attempts"] + 1, status, latency, error,
        )

    async def _finish(self, d, outcome: str, status, error, latency, *, disable: bool = False) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._record(conn, d, status, error, latency)
            await conn.execute(
                """UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, last_status = $3,
                          last_error = $4, updated_at = now() WHERE delivery_id = $1""",
                d["delivery_id"], outcome, status, error,
            )
            if disable:
                await conn.execute("UPDATE webhook_endpoints SET enabled = false WHERE endpoint_id = $1", d["endpoint_id"])

    async def _retry(self, d, status, error, latency, delay: float) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._record(conn, d, status, error, latency)
            await conn.execute(
                """UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $2, last_error = $3,
                          next_attempt_at = now() + make_interval(secs => $4), updated_at = now()
                    WHERE delivery_id = $1""",
                d["delivery_id"], status, error, delay,
            )
