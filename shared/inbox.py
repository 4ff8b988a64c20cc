"""Idempotent consumption: the handler's writes and the inbox row that marks the event as
processed commit in one transaction, and the Kafka offset is committed only after that.

A redelivered event (relay republished it, or the process died before the offset commit) finds
its inbox row and is skipped. A malformed message goes to dead_letters instead of blocking its
partition; a handler that keeps failing is retried with backoff, then dead-lettered.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import structlog
from pydantic import ValidationError

from shared.envelope import CloudEvent
from shared.failpoints import failpoint
from shared.logs import bind_correlation, get_logger

log = get_logger(__name__)

Handler = Callable[[asyncpg.Connection, CloudEvent], Awaitable[None]]


@dataclass
class Delivery:
    """Where a message came from, for logs and dead letters."""

    topic: str
    partition: int | None = None
    offset: int | None = None


class InboxConsumer:
    def __init__(self, name: str, handler: Handler, *, max_attempts: int = 5) -> None:
        self.name, self.handler, self.max_attempts = name, handler, max_attempts
        self._failures: dict[str, int] = {}

    async def process(self, pool: asyncpg.Pool, raw: bytes, where: Delivery) -> bool:
        """Handle one message; True if it had an effect, False if skipped or dead-lettered.

        Raises (so the message is redelivered) only for failures worth retrying.
        """
        structlog.contextvars.bind_contextvars(consumer=self.name, topic=where.topic)
        try:
            event = CloudEvent.model_validate_json(raw)
        except ValidationError as exc:
            await self._dead_letter(pool, raw, where, None, f"malformed event: {exc}")
            return False
        bind_correlation(event.correlationid, causation_id=event.id)
        structlog.contextvars.bind_contextvars(event_id=event.id, event_type=event.type)
        try:
            async with pool.acquire() as conn, conn.transaction():
                fresh = await conn.fetchval(
                    """INSERT INTO inbox (consumer, event_id) VALUES ($1, $2)
                       ON CONFLICT DO NOTHING RETURNING true""",
                    self.name,
                    event.id,
                )
                if not fresh:
                    log.info("duplicate event skipped")
                    return False
                await self.handler(conn, event)
        except Exception as exc:
            attempts = self._failures.get(event.id, 0) + 1
            self._failures[event.id] = attempts
            if attempts >= self.max_attempts:
                self._failures.pop(event.id, None)
                await self._dead_letter(pool, raw, where, event.id, repr(exc))
                return False
            log.warning("handler failed, will retry", attempt=attempts, error=repr(exc))
            await asyncio.sleep(min(0.2 * 2**attempts, 5.0))
            raise
        self._failures.pop(event.id, None)
        failpoint(f"consumer.after_commit:{self.name}")
        log.debug("event handled")
        return True

    async def _dead_letter(
        self, pool: asyncpg.Pool, raw: bytes, where: Delivery, event_id: str | None, error: str
    ) -> None:
        log.error("event dead-lettered", error=error[:500], partition=where.partition, offset=where.offset)
        await pool.execute(
            """INSERT INTO dead_letters (consumer, topic, partition, "offset", event_id, payload, error)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            self.name, where.topic, where.partition, where.offset, event_id, raw, error,
        )
