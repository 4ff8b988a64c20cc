"""The delivery worker: claims due deliveries, POSTs them signed (Standard Webhooks), records
each attempt, and schedules retries. A claim is a lease: if the process dies mid-delivery the
lease runs out and another attempt is made, so delivery is at least once (receivers dedupe on
`webhook-id`).

Each endpoint is a lane, so a slow or dead endpoint holds up no other: a claim takes every
endpoint's oldest due delivery before anyone's second, an endpoint has at most `per_endpoint`
attempts in flight across all replicas (its unexpired leases), and an endpoint that failed
`failure_threshold` times in a row waits as a whole (ENDPOINT_BACKOFF), then gets one probe at
a time until one succeeds.
"""

import asyncio
import email.utils
import random
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from shared.aggregate import Aggregates
from shared.errors import Refused
from shared.logs import bind_correlation, get_logger
from shared.vault import Vault
from shared.wakeup import Wakeup

from ..settings import DEV_SECRETS_KEY
from . import endpoints
from .outbound import delivery_client, read_capped
from .repository import DELIVERY_CHANNEL
from .signing import active_secrets, sign_headers
from .urls import Resolver, parse_endpoint_url, system_resolver

log = get_logger(__name__)

# Seconds to wait before attempt 2, 3, ...: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
RETRY_DELAYS = [5, 300, 1800, 7200, 18000, 36000, 36000]
MAX_RETRY_AFTER_S = 24 * 3600  # a receiver cannot push a retry out further than a day
# How long an endpoint waits after its 1st, 2nd, ... failure past the threshold: 5 s up to hourly.
ENDPOINT_BACKOFF = [5, 30, 120, 600, 1800, 3600]
FAILURE_THRESHOLD = 5

# SQL about a lane's endpoint `e`; $2 is the cap of attempts in flight, $3 the failure threshold.
_BACKING_OFF = """(e.failing_since IS NOT NULL AND e.consecutive_failures >= $3
                   AND e.enabled AND e.deleted_at IS NULL)"""
# Its attempts in flight: the unexpired leases of its deliveries, whichever replica holds them.
_IN_FLIGHT = """CROSS JOIN LATERAL (SELECT count(*) AS n FROM webhook_deliveries f
                                      WHERE f.endpoint_id = e.endpoint_id AND f.leased_until > now()) in_flight"""
# How many more it may start now: up to its cap, or one probe at a time while backing off.
_ROOM = f"(CASE WHEN {_BACKING_OFF} THEN 1 ELSE $2 END - in_flight.n)"
# The lanes with due work and room, fewest in flight first; locked, so one replica claims for them.
# `pending` is a loose index scan of the lane index (ordered as that index is, so it is the one
# used): one probe per endpoint with pending deliveries, however many each has and however many
# endpoints have none.
_LANES = f"""
    WITH RECURSIVE pending (endpoint_id) AS (
        (SELECT endpoint_id FROM webhook_deliveries WHERE status = 'pending'
          ORDER BY endpoint_id, next_attempt_at LIMIT 1)
        UNION ALL
        SELECT (SELECT d.endpoint_id FROM webhook_deliveries d
                 WHERE d.status = 'pending' AND d.endpoint_id > p.endpoint_id
                 ORDER BY d.endpoint_id, d.next_attempt_at LIMIT 1)
          FROM pending p WHERE p.endpoint_id IS NOT NULL)
    SELECT e.endpoint_id FROM pending JOIN webhook_endpoints e USING (endpoint_id) {_IN_FLIGHT}
     CROSS JOIN LATERAL (SELECT d.next_attempt_at FROM webhook_deliveries d
                          WHERE d.endpoint_id = e.endpoint_id AND d.status = 'pending'
                            AND d.next_attempt_at <= now()
                          ORDER BY d.next_attempt_at LIMIT 1) oldest
     WHERE ({_BACKING_OFF} AND e.next_attempt_at > now()) IS NOT TRUE AND {_ROOM} > 0
     ORDER BY in_flight.n, oldest.next_attempt_at LIMIT $1
       FOR NO KEY UPDATE OF e SKIP LOCKED"""
# Up to each lane's room of its due deliveries, filling the lanes evenly: a delivery's place is
# how many attempts its endpoint would have in flight with it.
_CLAIM = f"""
    WITH due AS (
        SELECT d.delivery_id FROM webhook_endpoints e {_IN_FLIGHT}
         CROSS JOIN LATERAL (
             SELECT delivery_id, next_attempt_at, row_number() OVER (ORDER BY next_attempt_at) AS turn
               FROM webhook_deliveries
              WHERE endpoint_id = e.endpoint_id AND status = 'pending' AND next_attempt_at <= now()
              ORDER BY next_attempt_at LIMIT greatest({_ROOM}, 0)) d
         WHERE e.endpoint_id = ANY($4::text[])
         ORDER BY in_flight.n + d.turn, d.next_attempt_at LIMIT $1)
    UPDATE webhook_deliveries d
       SET next_attempt_at = now() + make_interval(secs => $5),
           leased_until = now() + make_interval(secs => $5), updated_at = now()
      FROM due, webhook_endpoints e
     WHERE d.delivery_id = due.delivery_id AND e.endpoint_id = d.endpoint_id
    RETURNING d.delivery_id, d.correlation_id, d.event_id, d.event_type, d.payload,
              d.attempts, d.schedule_start, d.endpoint_id, e.url, e.secret,
              e.previous_secret, e.previous_secret_expires_at,
              e.enabled AND e.deleted_at IS NULL AS active"""


def next_delay(attempts: int, retry_after: float | None = None, schedule: list[float] = RETRY_DELAYS) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones; None when exhausted."""
    if attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    delay = base * random.uniform(0.9, 1.1)  # jitter spreads retries of many failed deliveries
    return max(delay, min(retry_after or 0, MAX_RETRY_AFTER_S))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds or as an HTTP date (RFC 9110); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0)


class DeliveryWorker:
    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        aggregates: Aggregates,
        *,
        timeout: float = 15.0,
        concurrency: int = 50,
        per_endpoint: int = 5,
        lease_s: float = 60,
        poll_interval: float = 1.0,
        schedule: list[float] = RETRY_DELAYS,
        disable_after_s: float = 5 * 24 * 3600,
        allow_private: bool = False,
        resolve: Resolver = system_resolver,
        vault: Vault | None = None,
        failure_threshold: int = FAILURE_THRESHOLD,
        endpoint_backoff: list[float] = ENDPOINT_BACKOFF,
    ) -> None:
        self.dsn, self.pool, self.aggregates, self.timeout = dsn, pool, aggregates, timeout  # for endpoints.disable
        # The lease must outlast an attempt, or a slow attempt would be claimed twice.
        self.lease_s = max(lease_s, timeout + 5)
        self.poll_interval, self.schedule = poll_interval, schedule
        self.per_endpoint, self.disable_after_s = per_endpoint, disable_after_s
        self.failure_threshold, self.endpoint_backoff = failure_threshold, endpoint_backoff
        self.allow_private, self.resolve = allow_private, resolve
        self.vault = vault or Vault(DEV_SECRETS_KEY)
        self._concurrency = concurrency
        self._wakeup = Wakeup(poll_interval)

    async def run(self) -> None:
        listener = await asyncpg.connect(self.dsn)
        tasks: set[asyncio.Task] = set()
        try:
            await self._wakeup.listen(listener, DELIVERY_CHANNEL)
            await self.encrypt_plaintext_secrets()
            limits = httpx.Limits(max_connections=self._concurrency, max_keepalive_connections=20)
            async with self.client(limits) as client:
                while True:
                    free = self._concurrency - len(tasks)
                    claimed = await self.claim(free) if free else []
                    for row in claimed:
                        tasks.add(self._start(client, row, tasks))
                    if len(claimed) < free or not free:
                        await self._wakeup.wait()
        finally:
            for task in tasks:
                task.cancel()
            await listener.close()

    def client(self, limits: httpx.Limits | None = None) -> httpx.AsyncClient:
        """The only client deliveries use: vetted, pinned addresses; no proxies, no redirects."""
        return delivery_client(
            allow_private=self.allow_private, timeout=self.timeout, limits=limits, resolve=self.resolve
        )

    def _start(self, client: httpx.AsyncClient, row: asyncpg.Record, tasks: set) -> asyncio.Task:
        def done(task: asyncio.Task) -> None:
            tasks.discard(task)
            if not task.cancelled() and task.exception():
                log.error("delivery attempt crashed", delivery_id=row["delivery_id"], error=repr(task.exception()))
            self._wakeup.set()

        task = asyncio.create_task(self.attempt(client, row))
        task.add_done_callback(done)
        return task

    async def claim(self, limit: int) -> list[asyncpg.Record]:
        """Lease up to `limit` due deliveries, fairly across endpoints (see the module docstring)."""
        async with self.pool.acquire() as conn, conn.transaction():
            # The lanes are locked in a statement of their own, so the claim's statement, with a
            # snapshot taken after, counts every lease another replica committed for them.
            lanes = await conn.fetch(_LANES, limit, self.per_endpoint, self.failure_threshold)
            if not lanes:
                return []
            return await conn.fetch(
                _CLAIM,
                limit,
                self.per_endpoint,
                self.failure_threshold,
                [r["endpoint_id"] for r in lanes],
                float(self.lease_s),
            )

    async def attempt(self, client: httpx.AsyncClient, d: asyncpg.Record) -> None:
        bind_correlation(d["correlation_id"])
        if not d["active"]:
            await self._give_up(d, "endpoint disabled or deleted")
            return
        now = datetime.now(UTC)
        started = time.perf_counter()
        status, error, retry_after, body = None, None, None, None
        try:
            headers = {
                "content-type": "application/json",
                "user-agent": "Billstream-Webhooks/1",
                "accept-encoding": "identity",  # the body cap counts bytes as sent
                **sign_headers(d["event_id"], d["payload"], now, self._secrets(d, now)),
            }
            # httpx's timeout is per read; this bounds the whole exchange, slow-drip bodies too.
            async with asyncio.timeout(self.timeout):
                parse_endpoint_url(d["url"])  # the addresses are vetted by the client, at connect time
                async with client.stream("POST", d["url"], content=d["payload"], headers=headers) as response:
                    status = response.status_code
                    # PostgreSQL text cannot hold NUL: a receiver's NUL must not break the record.
                    body = (await read_capped(response)).decode("utf-8", "replace").replace("\x00", "\ufffd")
            if status in (429, 503):
                retry_after = parse_retry_after(response.headers.get("retry-after"))
        except Refused as exc:
            error = f"{exc.code}: {exc.message}"
        except TimeoutError:
            error = f"timeout: no response within {self.timeout:g}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500] if str(exc) else type(exc).__name__
        latency = int((time.perf_counter() - started) * 1000)
        attempts = d["attempts"] + 1
        log_kw = dict(
            delivery_id=d["delivery_id"],
            endpoint_id=d["endpoint_id"],
            event_id=d["event_id"],
            event_type=d["event_type"],
            status=status,
            latency_ms=latency,
            attempt=attempts,
        )
        if status is not None and 200 <= status < 300:
            log.info("webhook delivered", **log_kw)
            await self._record(d, "succeeded", status, None, latency, body)
        elif status == 410:  # the receiver says this endpoint is gone for good
            log.warning("webhook endpoint gone, disabling", **log_kw)
            await self._record(
                d,
                "failed",
                status,
                "410 Gone: endpoint disabled",
                latency,
                body,
                disable=("gone", "The endpoint answered 410 Gone."),
            )
        else:
            error = error or f"HTTP {status}"
            delay = next_delay(attempts - d["schedule_start"], retry_after, self.schedule)
            log.warning("webhook attempt failed", error=error, retry_in_s=delay, **log_kw)
            await self._record(
                d,
                "failed" if delay is None else "pending",
                status,
                error,
                latency,
                body,
                delay=delay,
                retry_after=retry_after,
            )

    def _secrets(self, d: asyncpg.Record, now: datetime) -> list[str]:
        """The endpoint's signing secrets, decrypted. A secret no configured key opens (its key was
        dropped too early) fails the attempt visibly and is retried, instead of stopping the worker."""
        try:
            previous = self.vault.decrypt_text(d["previous_secret"]) if d["previous_secret"] else None
            return active_secrets(self.vault.decrypt_text(d["secret"]), previous, d["previous_secret_expires_at"], now)
        except ValueError as exc:
            raise Refused(
                "secret_undecryptable",
                "The endpoint's secret cannot be decrypted with the "
                "configured keys (BILLSTREAM_WEBHOOKS_SECRETS_KEYS).",
            ) from exc

    async def encrypt_plaintext_secrets(self) -> int:
        """Endpoints stored before secrets were encrypted: encrypt them in place, once, under a row
        lock so two replicas starting together cannot encrypt one twice. Returns how many."""
        done = 0
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT endpoint_id, secret, previous_secret FROM webhook_endpoints
                    WHERE secret LIKE 'whsec\\_%' OR previous_secret LIKE 'whsec\\_%' FOR UPDATE"""
            )
            for r in rows:
                await conn.execute(
                    "UPDATE webhook_endpoints SET secret = $2, previous_secret = $3 WHERE endpoint_id = $1",
                    r["endpoint_id"],
                    self._sealed(r["secret"]),
                    self._sealed(r["previous_secret"]),
                )
                done += 1
        if done:
            log.info("endpoint secrets encrypted at rest", endpoints=done)
        return done

    def _sealed(self, secret: str | None) -> str | None:
        return self.vault.encrypt_text(secret) if secret and secret.startswith("whsec_") else secret

    async def _record(
        self,
        d,
        outcome: str,
        status,
        error,
        latency,
        body,
        *,
        delay: float | None = None,
        retry_after: float | None = None,
        disable: tuple[str, str] | None = None,
    ) -> None:
        """The endpoint's health, the attempt and the delivery's new state, in one transaction;
        the endpoint row first, in the order a claim locks them (no deadlock)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if outcome == "succeeded":
                await conn.execute(
                    """UPDATE webhook_endpoints
                          SET failing_since = NULL, consecutive_failures = 0, next_attempt_at = NULL
                        WHERE endpoint_id = $1 AND (failing_since IS NOT NULL OR consecutive_failures > 0)""",
                    d["endpoint_id"],
                )
            elif disable is None:
                disable = await self._failed(conn, d["endpoint_id"], error, retry_after)
            await conn.execute(
                """INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms, error, response_body)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
                d["delivery_id"],
                d["attempts"] + 1,
                status,
                latency,
                error,
                body,
            )
            await conn.execute(
                """UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, last_status = $3,
                          last_error = $4, updated_at = now(), leased_until = NULL,
                          next_attempt_at = CASE WHEN $2 = 'pending'
                                                 THEN now() + make_interval(secs => $5) ELSE next_attempt_at END
                    WHERE delivery_id = $1""",
                d["delivery_id"],
                outcome,
                status,
                error,
                float(delay or 0),
            )
            if disable:
                await endpoints.disable(conn, self.aggregates, d["endpoint_id"], reason=disable[0], detail=disable[1])

    async def _failed(self, conn, endpoint_id: str, error: str, retry_after: float | None) -> tuple[str, str] | None:
        """Count the failure in the endpoint's streak; past the threshold the endpoint waits. Returns
        why to disable it if it has failed for too long."""
        failing_since, failures = await conn.fetchrow(
            """UPDATE webhook_endpoints
                  SET consecutive_failures = CASE WHEN failing_since IS NULL THEN 1 ELSE consecutive_failures + 1 END,
                      failing_since = coalesce(failing_since, now())
                WHERE endpoint_id = $1 RETURNING failing_since, consecutive_failures""",
            endpoint_id,
        )
        if failures >= self.failure_threshold:
            past = min(failures - self.failure_threshold + 1, len(self.endpoint_backoff))
            await conn.execute(
                """UPDATE webhook_endpoints SET next_attempt_at = now() + make_interval(secs => $2)
                    WHERE endpoint_id = $1""",
                endpoint_id,
                next_delay(past, retry_after, self.endpoint_backoff),
            )
        if datetime.now(UTC) - failing_since >= timedelta(seconds=self.disable_after_s):
            return "failing", f"Every attempt has failed since {failing_since.isoformat()}; last error: {error}"
        return None

    async def _give_up(self, d, reason: str) -> None:
        """The endpoint was disabled or deleted after this delivery was queued: keep the
        delivery as failed (it can be retried once the endpoint is enabled again)."""
        await self.pool.execute(
            """UPDATE webhook_deliveries SET status = 'failed', last_error = $2, updated_at = now(), leased_until = NULL
                WHERE delivery_id = $1""",
            d["delivery_id"],
            reason,
        )
        log.info("webhook delivery skipped", delivery_id=d["delivery_id"], reason=reason)
