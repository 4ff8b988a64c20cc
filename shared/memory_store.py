"""An event store in memory with the PostgreSQL store's contract (tests/support/eventstore_contract.py
runs the same tests against both), and a pool and connections shaped like asyncpg's, so an app
layer that only loads, decides and appends runs in a unit test with no server.

The semantics copied are the ones callers rely on: appends only inside a transaction; a stale
expected version is a ConcurrencyError and writes nothing; nothing is visible to other
connections before commit, a rolled-back transaction leaves nothing; read_all orders by
(transaction, position) and stops at the oldest transaction still running, so a reader never
skips an event that commits late; a held stream blocks the holds it conflicts with until the
holding transaction ends. What it does not have: SQL (`execute`, `fetch`), so anything
with a repository of its own still needs the real server.
"""

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared.envelope import CloudEvent
from shared.eventstore import Checkpoint, ConcurrencyError, EventHead, StoredEvent


@dataclass
class OutboxRow:
    event_id: str
    topic: str
    key: str
    payload: bytes


class MemoryTransaction:
    def __init__(self, conn: "MemoryConnection") -> None:
        self.conn = conn

    async def start(self) -> None:
        self.conn._begin()

    async def commit(self) -> None:
        self.conn._end(commit=True)

    async def rollback(self) -> None:
        self.conn._end(commit=False)

    async def __aenter__(self) -> "MemoryTransaction":
        await self.start()
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        self.conn._end(commit=exc_type is None)


class MemoryConnection:
    def __init__(self, store: "MemoryEventStore") -> None:
        self.store = store
        self.transaction_id: int | None = None
        self.pending: list[StoredEvent] = []
        self.pending_outbox: list[OutboxRow] = []

    def transaction(self) -> MemoryTransaction:
        return MemoryTransaction(self)

    def is_in_transaction(self) -> bool:
        return self.transaction_id is not None

    def _begin(self) -> None:
        if self.transaction_id is not None:
            raise RuntimeError("a transaction is already open on this connection")
        self.transaction_id = next(self.store._transaction_ids)
        self.store._running.add(self.transaction_id)

    def _end(self, *, commit: bool) -> None:
        if self.transaction_id is None:
            raise RuntimeError("no transaction is open on this connection")
        try:
            if commit:
                self.store._commit(self.pending, self.pending_outbox)
        finally:
            self.store._running.discard(self.transaction_id)
            self.store._release(self.transaction_id)
            self.transaction_id, self.pending, self.pending_outbox = None, [], []


class MemoryPool:
    """`acquire()` as a context manager, or acquire/release by hand, like asyncpg's pool."""

    def __init__(self, store: "MemoryEventStore") -> None:
        self.store = store

    def acquire(self) -> "_Acquire":
        return _Acquire(self.store)

    async def release(self, conn: MemoryConnection) -> None:
        if conn.is_in_transaction():
            conn._end(commit=False)


class _Acquire:
    def __init__(self, store: "MemoryEventStore") -> None:
        self.conn = MemoryConnection(store)

    def __await__(self):  # type: ignore[no-untyped-def]  # `await pool.acquire()`
        async def get() -> MemoryConnection:
            return self.conn

        return get().__await__()

    async def __aenter__(self) -> MemoryConnection:
        return self.conn

    async def __aexit__(self, *_: object) -> None:
        if self.conn.is_in_transaction():
            self.conn._end(commit=False)


@dataclass
class MemoryEventStore:
    """`topics` maps a stream type to the topic its outbox rows name, as for EventStore."""

    topics: dict[str, str]
    events: list[StoredEvent] = field(default_factory=list)  # committed, in commit order
    outbox: list[OutboxRow] = field(default_factory=list)
    _transaction_ids: "itertools.count[int]" = field(default_factory=lambda: itertools.count(1))
    _positions: "itertools.count[int]" = field(default_factory=lambda: itertools.count(1))
    _running: set[int] = field(default_factory=set)
    # stream id -> {transaction id: exclusive?} of the transactions holding it
    _holds: dict[str, dict[int, bool]] = field(default_factory=dict)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def pool(self) -> MemoryPool:
        return MemoryPool(self)

    async def hold(self, conn: MemoryConnection, stream_id: str, *, exclusive: bool = False) -> None:
        if conn.transaction_id is None:
            raise RuntimeError("hold must run inside a transaction")
        me = conn.transaction_id
        while True:
            others = [x for t, x in self._holds.get(stream_id, {}).items() if t != me]
            if not others or (not exclusive and not any(others)):
                break
            await self._released.wait()
        holders = self._holds.setdefault(stream_id, {})
        holders[me] = exclusive or holders.get(me, False)

    def _release(self, transaction_id: int) -> None:
        for holders in self._holds.values():
            holders.pop(transaction_id, None)
        self._released.set()  # wake every waiter to look again; later ones wait on a new event
        self._released = asyncio.Event()

    def _visible(self, conn: MemoryConnection) -> list[StoredEvent]:
        return [*self.events, *conn.pending]

    def _commit(self, events: list[StoredEvent], outbox: list[OutboxRow]) -> None:
        # Two transactions may both have appended the same next version (each saw the stream as
        # it was before the other committed); the unique (stream, version) lets only the first in.
        taken = {(e.stream_id, e.version) for e in self.events}
        for e in events:
            if (e.stream_id, e.version) in taken:
                raise ConcurrencyError(e.stream_id, e.version - 1, e.version)
        self.events.extend(events)
        self.outbox.extend(outbox)

    async def append(
        self,
        conn: MemoryConnection,
        stream_type: str,
        stream_id: str,
        expected_version: int,
        events: Sequence[CloudEvent],
        *,
        key: str | None = None,
    ) -> int:
        if not conn.is_in_transaction():
            raise RuntimeError("append must run inside a transaction")
        if not events:
            return expected_version
        actual = max((e.version for e in self._visible(conn) if e.stream_id == stream_id), default=0)
        if actual != expected_version:
            raise ConcurrencyError(stream_id, expected_version, actual)
        assert conn.transaction_id is not None
        for i, e in enumerate(events):
            stamped = e.model_copy(update={"sequence": str(expected_version + i + 1)})
            conn.pending.append(
                StoredEvent(
                    conn.transaction_id,
                    next(self._positions),
                    stream_id,
                    stream_type,
                    expected_version + i + 1,
                    stamped,
                )
            )
            conn.pending_outbox.append(
                OutboxRow(stamped.id, self.topics[stream_type], key or stream_id, stamped.to_json())
            )
        return expected_version + len(events)

    async def read_stream(
        self, conn: MemoryConnection, stream_id: str, *, as_of: datetime | None = None
    ) -> list[StoredEvent]:
        return sorted(
            (e for e in self._visible(conn) if e.stream_id == stream_id and (as_of is None or e.event.time <= as_of)),
            key=lambda e: e.version,
        )

    def _readable(self) -> list[StoredEvent]:
        oldest_running = min(self._running, default=None)
        return sorted(
            (e for e in self.events if oldest_running is None or e.transaction_id < oldest_running),
            key=lambda e: e.checkpoint,
        )

    async def read_all(
        self, conn: MemoryConnection, *, after: Checkpoint = Checkpoint(), limit: int = 1000
    ) -> list[StoredEvent]:
        return [e for e in self._readable() if e.checkpoint > after][:limit]

    async def read_heads(
        self, conn: MemoryConnection, *, after: Checkpoint = Checkpoint(), limit: int = 1000
    ) -> list[EventHead]:
        return [
            EventHead(e.checkpoint, e.stream_id, e.event.type, e.version)
            for e in await self.read_all(conn, after=after, limit=limit)
        ]

    async def read_positions(self, conn: MemoryConnection, positions: list[int]) -> list[StoredEvent]:
        wanted = set(positions)
        return sorted((e for e in self.events if e.position in wanted), key=lambda e: e.checkpoint)

    async def has_unreadable(self, conn: MemoryConnection) -> bool:
        return len(self._readable()) < len(self.events)

    async def last_position(self, conn: MemoryConnection) -> int:
        return max((e.position for e in self.events), default=0)
