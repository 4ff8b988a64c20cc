"""dead_letters: the one table where a consumer or a projection parks an event it cannot handle
(a deterministic failure, shared/failures.py), so everything else goes on. An operator lists,
replays (after a fix) or discards them with `python -m services.<name> dead-letters ...`.

A row is `parked` until it is `replayed` (the handler or projection ran it) or `discarded`
(marked handled without running it).
"""

from dataclasses import dataclass
from datetime import datetime

import asyncpg

CONSUMER, PROJECTION = "consumer", "projection"

# Parked again (a redelivery failing the same way): the existing row takes the newest error.
PARK = """
INSERT INTO dead_letters (source, consumer, topic, partition, "offset", event_id, stream_id, payload, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (source, consumer, event_id) WHERE status = 'parked'
DO UPDATE SET error = EXCLUDED.error, partition = EXCLUDED.partition, "offset" = EXCLUDED."offset"
RETURNING id
"""


@dataclass(frozen=True)
class DeadLetter:
    id: int
    source: str
    consumer: str  # the consumer's or the projection's name
    topic: str | None
    partition: int | None
    offset: int | None
    event_id: str | None
    stream_id: str | None
    payload: bytes
    error: str
    status: str
    created_at: datetime
    resolved_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "DeadLetter":
        return cls(**{**dict(row), "payload": bytes(row["payload"])})


async def park(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    source: str,
    name: str,
    payload: bytes,
    error: str,
    event_id: str | None = None,
    stream_id: str | None = None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> int:
    """Record a parked event; returns the dead letter's id."""
    error = error.replace("\x00", "\\x00")  # a text column cannot hold NUL
    dead_letter_id: int = await conn.fetchval(
        PARK, source, name, topic, partition, offset, event_id, stream_id, payload, error
    )
    return dead_letter_id


async def get(conn: asyncpg.Connection | asyncpg.Pool, id: int, *, lock: bool = False) -> DeadLetter | None:
    row = await conn.fetchrow(f"SELECT * FROM dead_letters WHERE id = $1{' FOR UPDATE' if lock else ''}", id)
    return DeadLetter.from_row(row) if row else None


async def listing(conn: asyncpg.Connection | asyncpg.Pool, *, status: str | None = "parked") -> list[DeadLetter]:
    rows = await conn.fetch("SELECT * FROM dead_letters WHERE $1::text IS NULL OR status = $1 ORDER BY id", status)
    return [DeadLetter.from_row(r) for r in rows]


async def parked_count(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM dead_letters WHERE status = 'parked'")
    return count


async def resolve(conn: asyncpg.Connection, id: int, status: str) -> None:
    """Mark a parked dead letter replayed or discarded, in the caller's transaction; raises if
    it is no longer parked (someone else resolved it first), which rolls that transaction back."""
    if not await conn.fetchval(
        """UPDATE dead_letters SET status = $2, resolved_at = now() WHERE id = $1 AND status = 'parked'
           RETURNING true""",
        id,
        status,
    ):
        raise LookupError(f"dead letter {id} is not parked")


async def discard(pool: asyncpg.Pool, letter: DeadLetter) -> None:
    """Mark a dead letter handled without running it. A consumer's event also gets its inbox
    row, so a redelivery of it is skipped; a projection's checkpoint is already past it."""
    async with pool.acquire() as conn, conn.transaction():
        if letter.source == CONSUMER and letter.event_id:
            await conn.execute(
                "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                letter.consumer,
                letter.event_id,
            )
        await resolve(conn, letter.id, "discarded")
