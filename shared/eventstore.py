"""The event store: append with an expected version, read a stream, read everything after a
checkpoint. Appends also write the outbox rows, in the caller's transaction.

Reading everything is ordered by (transaction id, position) and stops at the oldest transaction
still running: every transaction older than that has finished, so what a reader sees never
changes behind its checkpoint, whatever order concurrent appends commit in. A long transaction
anywhere in the PostgreSQL cluster holds readers back until it ends (keep transactions short).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import asyncpg

from shared.envelope import CloudEvent
from shared.idempotency import mark_committed

NOTIFY_CHANNEL = "billstream_events"
# Events of transactions that have finished, in the order readers take them.
READABLE = "transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
AFTER = "(transaction_id, position) > ($1::xid8, $2::bigint)"

# One round trip per append: the version check, the events, their outbox rows and the wake-up.
# A stale expected version inserts nothing, and the unique (stream_id, version) catches a writer
# that raced past the check.
APPEND = """
WITH current AS (SELECT coalesce(max(version), 0) AS version FROM events WHERE stream_id = $1),
appended AS (
    INSERT INTO events (event_id, stream_id, stream_type, version, event_type, tenant_id, occurred_at, envelope)
    SELECT e.event_id, $1, $2, e.version, e.event_type, e.tenant_id, e.occurred_at, e.envelope::jsonb
    FROM unnest($4::text[], $5::int[], $6::text[], $7::text[], $8::timestamptz[], $9::text[])
         WITH ORDINALITY AS e(event_id, version, event_type, tenant_id, occurred_at, envelope, n)
    CROSS JOIN current
    WHERE current.version = $3
    ORDER BY e.n
    RETURNING event_id
),
queued AS (
    INSERT INTO outbox (event_id, topic, key, payload)
    SELECT o.event_id, $10, $11, o.payload
    FROM unnest($4::text[], $12::bytea[]) WITH ORDINALITY AS o(event_id, payload, n)
    WHERE EXISTS (SELECT 1 FROM appended)
    ORDER BY o.n
)
SELECT (SELECT version FROM current) AS actual, (SELECT count(*) FROM appended) AS appended,
       pg_notify($13, '')
"""


class ConcurrencyError(Exception):
    """The stream moved on since it was read: reload and decide again."""

    transient = True  # retrying (after reloading) can succeed: shared/failures.py reads this

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id}: expected version {expected}, found {actual}")
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


class Checkpoint(NamedTuple):
    """A place in the store's reading order: (writing transaction's id, position)."""

    transaction_id: int = 0
    position: int = 0


@dataclass(frozen=True)
class EventHead:
    """Where an event is and what it is, without its envelope (nothing to decode)."""

    checkpoint: Checkpoint
    stream_id: str
    event_type: str
    version: int


@dataclass(frozen=True)
class StoredEvent:
    transaction_id: int
    position: int
    stream_id: str
    stream_type: str
    version: int
    event: CloudEvent

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.transaction_id, self.position)


COLUMNS = "position, stream_id, stream_type, version, envelope, transaction_id"


def _row_to_stored(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        transaction_id=row["transaction_id"],
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
        stamped = [e.model_copy(update={"sequence": str(expected_version + i + 1)}) for i, e in enumerate(events)]
        payloads = [e.to_json() for e in stamped]
        try:
            actual, appended, _ = await conn.fetchrow(
                APPEND,
                stream_id,
                stream_type,
                expected_version,
                [e.id for e in stamped],
                [expected_version + i + 1 for i in range(len(stamped))],
                [e.type for e in stamped],
                [e.tenantid for e in stamped],
                [e.time for e in stamped],
                [p.decode() for p in payloads],
                self.topics[stream_type],
                key or stream_id,
                payloads,
                NOTIFY_CHANNEL,
            )
        except asyncpg.UniqueViolationError as exc:  # a concurrent append to the stream won
            raise ConcurrencyError(stream_id, expected_version, expected_version + 1) from exc
        if appended != len(stamped):
            raise ConcurrencyError(stream_id, expected_version, actual)
        await mark_committed(conn)  # the HTTP request's claim commits with its work
        return expected_version + len(stamped)

    async def hold(self, conn: asyncpg.Connection, stream_id: str, *, exclusive: bool = False) -> None:
        """Lock a stream until the caller's transaction ends, beyond its own appends: shared holds
        go together, an exclusive one waits for every other and they for it. For a decision on
        one stream that depends on writes to others (no customer is deleted beside a new invoice
        for them). A lock on a name, not a row: a stream with no events yet, or any other name a
        decision turns on (one customer per e-mail), can be held."""
        if not conn.is_in_transaction():
            raise RuntimeError("hold must run inside a transaction")
        lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        await conn.execute(f"SELECT {lock}(hashtextextended('stream:' || $1, 0))", stream_id)

    async def read_stream(
        self, conn: asyncpg.Connection, stream_id: str, *, as_of: datetime | None = None
    ) -> list[StoredEvent]:
        """The stream's events in version order; with `as_of`, only those that happened by then."""
        rows = await conn.fetch(
            f"""SELECT {COLUMNS} FROM events
               WHERE stream_id = $1 AND ($2::timestamptz IS NULL OR occurred_at <= $2)
               ORDER BY version""",
            stream_id,
            as_of,
        )
        return [_row_to_stored(r) for r in rows]

    async def read_all(
        self, conn: asyncpg.Connection, *, after: Checkpoint = Checkpoint(), limit: int = 1000
    ) -> list[StoredEvent]:
        """Every readable event after `after`, in reading order (see the module's docstring)."""
        rows = await conn.fetch(
            f"""SELECT {COLUMNS} FROM events WHERE {AFTER} AND {READABLE}
                ORDER BY transaction_id, position LIMIT $3""",
            *after,
            limit,
        )
        return [_row_to_stored(r) for r in rows]

    async def read_heads(
        self, conn: asyncpg.Connection, *, after: Checkpoint = Checkpoint(), limit: int = 1000
    ) -> list[EventHead]:
        """Like read_all, without the envelopes."""
        rows = await conn.fetch(
            f"""SELECT transaction_id, position, stream_id, event_type, version FROM events
                WHERE {AFTER} AND {READABLE} ORDER BY transaction_id, position LIMIT $3""",
            *after,
            limit,
        )
        return [
            EventHead(Checkpoint(r["transaction_id"], r["position"]), r["stream_id"], r["event_type"], r["version"])
            for r in rows
        ]

    async def read_positions(self, conn: asyncpg.Connection, positions: list[int]) -> list[StoredEvent]:
        """The events at these positions, in reading order."""
        rows = await conn.fetch(
            f"""SELECT {COLUMNS} FROM events WHERE position = ANY($1::bigint[])
                ORDER BY transaction_id, position""",
            positions,
        )
        return [_row_to_stored(r) for r in rows]

    async def has_unreadable(self, conn: asyncpg.Connection) -> bool:
        """True if committed events wait behind a transaction still running: a reader should look
        again shortly rather than wait for the next notification."""
        return bool(await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM events WHERE NOT ({READABLE}))"))

    async def last_position(self, conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))
