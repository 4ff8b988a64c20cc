"""Idempotent consumption: the handler's writes and the inbox row that marks the event as
processed commit in one transaction, and the Kafka offset is committed only after that.

A redelivered event (relay republished it, or the process died before the offset commit) finds
its inbox row and is skipped. Failures come in two kinds (shared/failures.py): a transient one is
retried in place, without limit, so the batch and its partitions wait and nothing is reordered or
lost; a deterministic one (malformed or schema-invalid event, a value that does not fit, a
refusal) parks the message in dead_letters at once and consumption goes on.
"""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import structlog
from pydantic import ValidationError

from shared import deadletters
from shared.deadletters import DeadLetter
from shared.envelope import CloudEvent
from shared.failpoints import failpoint
from shared.failures import Retrying, backoff, is_transient
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
    def __init__(self, name: str, handler: Handler, *, max_backoff: float = 5.0) -> None:
        self.name, self.handler, self.max_backoff = name, handler, max_backoff
        self.retrying: Retrying | None = None  # shown by /ready

    async def process(self, pool: asyncpg.Pool, raw: bytes, where: Delivery) -> bool:
        """Handle one message; True if it had an effect, False if skipped or parked.

        Returns only once the message is settled (handled, a duplicate, or parked), so the
        caller may commit its offset; a transient failure is retried here until it passes.
        """
        structlog.contextvars.bind_contextvars(consumer=self.name, topic=where.topic)
        while True:
            try:
                handled = await self._settle(pool, raw, where)
                self.retrying = None
                return handled
            except Exception as exc:  # noqa: BLE001 - transient, or parking itself failed: nothing is settled
                self.retrying = self.retrying or Retrying("consumer", self.name, "", _event_id(raw))
                self.retrying.attempts, self.retrying.error = self.retrying.attempts + 1, repr(exc)
                attempt = self.retrying.attempts
                transient = is_transient(exc)
                (log.warning if transient else log.error)(
                    "event not settled, retrying", attempt=attempt, transient=transient, error=repr(exc)
                )
                await asyncio.sleep(backoff(attempt, cap=self.max_backoff))

    async def _settle(self, pool: asyncpg.Pool, raw: bytes, where: Delivery) -> bool:
        try:
            event = CloudEvent.model_validate_json(raw)
        except ValidationError as exc:
            await self._park(pool, raw, where, None, f"malformed event: {exc}")
            return False
        bind_correlation(event.correlationid, causation_id=event.id)
        structlog.contextvars.bind_contextvars(event_id=event.id, event_type=event.type)
        try:
            async with pool.acquire() as conn, conn.transaction():
                handled = await self.apply(conn, event)
        except Exception as exc:
            if is_transient(exc):
                raise
            await self._park(pool, raw, where, event, repr(exc))
            return False
        if handled:
            failpoint(f"consumer.after_commit:{self.name}")
            log.debug("event handled")
        return handled

    async def apply(self, conn: asyncpg.Connection, event: CloudEvent) -> bool:
        """The inbox row and the handler's writes, in the caller's transaction; False if the
        event was already processed."""
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
        return True

    async def replay(self, pool: asyncpg.Pool, letter: DeadLetter) -> bool:
        """Run a parked message's handler again (after a fix) and mark it replayed, in one
        transaction; False if the event had been processed meanwhile. Raises if it still fails."""
        event = CloudEvent.model_validate_json(letter.payload)
        async with pool.acquire() as conn, conn.transaction():
            handled = await self.apply(conn, event)
            await deadletters.resolve(conn, letter.id, "replayed")
        return handled

    async def _park(
        self, pool: asyncpg.Pool, raw: bytes, where: Delivery, event: CloudEvent | None, error: str
    ) -> None:
        id = await deadletters.park(
            pool,
            source=deadletters.CONSUMER,
            name=self.name,
            payload=raw,
            error=error,
            event_id=event.id if event else None,
            stream_id=event.subject if event else None,
            topic=where.topic,
            partition=where.partition,
            offset=where.offset,
        )
        log.error(
            "event parked in dead_letters",
            dead_letter=id,
            consumer=self.name,
            topic=where.topic,
            stream=event and event.subject,
            event_id=event and event.id,
            error=error[:500],
            partition=where.partition,
            offset=where.offset,
        )


def _event_id(raw: bytes) -> str | None:
    """The message's event id for /ready, without trusting the message to decode."""
    with contextlib.suppress(Exception):
        event_id: str | None = json.loads(raw).get("id")
        return event_id
    return None
