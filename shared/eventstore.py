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


# One round trip per append: the lock, the version check, the events, their outbox rows and the
# wake-up. The lock CTE is joined into the events INSERT, so it is held before any position is
# drawn; a stale expected version inserts nothing (and the unique (stream_id, version) catches a
# writer that raced past the check).
APPEND = """
WITH lock AS (SELECT pg_advisory_xact_lock($1)),
current AS (SELECT coalesce(max(version), 0) AS version FROM events WHERE stream_id = $2),
appended AS (
    INSERT INTO events (event_id, stream_id, stream_type, version, event_type, tenant_id, occurred_at, envelope)
    SELECT e.event_id, $2, $3, e.version, e.event_type, e.tenant_id, e.occurred_at, e.envelope::jsonb
    FROM unnest($5::text[], $6::int[], $7::text[], $8::text[], $9::timestamptz[], $10::text[])
         WITH ORDINALITY AS e(event_id, version, event_type, tenant_id, occurred_at, envelope, n)
    CROSS JOIN lock CROSS JOIN current
    WHERE current.version = $4
    ORDER BY e.n
    RETURNING event_id
),
queued AS (
    INSERT INTO outbox (event_id, topic, key, payload)
    SELECT o.event_id, $11, $12, o.payload
    FROM unnest($5::text[], $13::bytea[]) WITH ORDINALITY AS o(event_id, payload, n)
    WHERE EXISTS (SELECT 1 FROM appended)
    ORDER BY o.n
)
SELECT (SELECT version FROM current) AS actual, (SELECT count(*) FROM appended) AS appended,
       pg_notify($14, '')
"""


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
        stamped = [
            e.model_copy(update={"sequence": str(expected_version + i + 1)})
            for i, e in enumerate(events)
        ]
        payloads = [e.to_json() for e in stamped]
        try:
            actual, appended, _ = await conn.fetchrow(
                APPEND,
                APPEND_LOCK, stream_id, stream_type, expected_version,
                [e.id for e in stamped], [int(e.sequence) for e in stamped], [e.type for e in stamped],
                [e.tenantid for e in stamped], [e.time for e in stamped], [p.decode() for p in payloads],
                self.topics[stream_type], key or stream_id, payloads, NOTIFY_CHANNEL,
            )
        except asyncpg.UniqueViolationError as exc:  # a concurrent append to the stream won
            raise ConcurrencyError(stream_id, expected_version, expected_version + 1) from exc
        if appended != len(stamped):
            raise ConcurrencyError(stream_id, expected_version, actual)
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
