"""The event store: append with an expected version, read a stream, read everything after a
position. Appends also write the outbox rows, in the caller's transaction.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.envelope import CloudEvent

# Appends take this transaction-level advisory lock before assigning positions, so positions
# follow commit order: a reader that has seen position N has seen every committed event before it,
# and a checkpoint can never skip an event whose transaction committed late.
APPEND_LOCK = 0x6269_6C6C  # "bill"
NOTIFY_CHANNEL = "billstream_events"


class ConcurrencyError(Exception):
    """The stream moved on since it was read: reload and decide again."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id}: expected version {expected}, found {actual}")
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


@dataclass(frozen=True)
class EventHead:
    """Where an event is and what it is, without its envelope (nothing to decode)."""

    position: int
    stream_id: str
    event_type: str


@dataclass(frozen=True)
class StoredEvent:
    position: int
    stream_id: str
    stream_type: str
    version: int
    event: CloudEvent


def _row_to_stored(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        position=row["position"],
        stream_id=row["stream_id"],
        stream_type=row["stream_type"],
        version=row["version"],
        event=CloudEvent.model_validate(row["envelope"]),
    )


class EventStore:
    """Stateless over a connection; `topics` maps a stream type to the Kafka topic it publishes to."""

    def __init__(self, topics: dict[str, str]) -> None:
        self.topics = topics

    async def append(
        self,
        conn: asyncpg.Connection,
        stream_type: str,
        stream_id: str,
        expected_version: int,
        events: Sequence[CloudEvent],
        *,
        key: str | None = None,
    ) -> int:
        """Append events after `expected_version` (0 for a new stream); returns the new version.

        `key` is the Kafka key of the outbox rows (default: the stream id); payments key their
        events by invoice id so an invoice's payment events stay in order on one partition.

        Must run inside the caller's transaction, which also holds whatever else the command
        writes (inbox row, read models); nothing is visible to readers until it commits.
        """
        if not conn.is_in_transaction():
            raise RuntimeError("append must run inside a transaction")
        if not events:
            return expected_version
        topic = self.topics[stream_type]
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        actual = await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1", stream_id
        )
        if actual != expected_version:
            raise ConcurrencyError(stream_id, expected_version, actual)
        stamped = [
            e.model_copy(update={"sequence": str(expected_version + i + 1)})
            for i, e in enumerate(events)
        ]
        try:
            await conn.executemany(
                """INSERT INTO events (event_id, stream_id, stream_type, version, event_type,
                                       tenant_id, occurred_at, envelope)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                [
                    (e.id, stream_id, stream_type, int(e.sequence), e.type, e.tenantid, e.time,
                     e.model_dump(mode="json", exclude_none=True))
                    for e in stamped
                ],
            )
        except asyncpg.UniqueViolationError as exc:  # a writer without the lock got there first
            raise ConcurrencyError(stream_id, expected_version, expected_version + 1) from exc
        await conn.executemany(
            "INSERT INTO outbox (event_id, topic, key, payload) VALUES ($1, $2, $3, $4)",
            [(e.id, topic, key or stream_id, e.to_json()) for e in stamped],
        )
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
        return expected_version + len(stamped)

    async def read_stream(
        self, conn: asyncpg.Connection, stream_id: str, *, as_of: datetime | None = None
    ) -> list[StoredEvent]:
        """The stream's events in version order; with `as_of`, only those that happened by then."""
        rows = await conn.fetch(
            """SELECT position, stream_id, stream_type, version, envelope FROM events
               WHERE stream_id = $1 AND ($2::timestamptz IS NULL OR occurred_at <= $2)
               ORDER BY version""",
            stream_id,
            as_of,
        )
        return [_row_to_stored(r) for r in rows]

    async def read_all(
        self, conn: asyncpg.Connection, *, after: int = 0, limit: int = 1000
    ) -> list[StoredEvent]:
        """Every event after `after`, in position (= commit) order."""
        rows = await conn.fetch(
            """SELECT position, stream_id, stream_type, version, envelope FROM events
               WHERE position > $1 ORDER BY position LIMIT $2""",
            after,
            limit,
        )
        return [_row_to_stored(r) for r in rows]

    async def read_heads(self, conn: asyncpg.Connection, *, after: int = 0, limit: int = 1000) -> list[EventHead]:
        """Like read_all, without the envelopes."""
        rows = await conn.fetch(
            "SELECT position, stream_id, event_type FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            after,
            limit,
        )
        return [EventHead(r["position"], r["stream_id"], r["event_type"]) for r in rows]

    async def read_positions(self, conn: asyncpg.Connection, positions: list[int]) -> list[StoredEvent]:
        """The events at these positions, in position order."""
        rows = await conn.fetch(
            """SELECT position, stream_id, stream_type, version, envelope FROM events
               WHERE position = ANY($1::bigint[]) ORDER BY position""",
            positions,
        )
        return [_row_to_stored(r) for r in rows]

    async def last_position(self, conn: asyncpg.Connection) -> int:
        return await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
