"""The aggregate plumbing, once for every service: load a stream, let the domain fold and decide,
record what it decided as events with the service's source, append them at the version loaded,
and run the whole command again when another writer got to the stream first.

    async def pay(conn):
        stream = await aggregates.load(conn, invoice_id)
        state = fold(stream.history, invoice_id)
        await aggregates.append(conn, stream, decide_payment(state, ...), tenant_id=tenant)
    await retry_on_conflict(pool, pay)
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

from pydantic import BaseModel

from shared.envelope import CloudEvent
from shared.eventstore import ConcurrencyError, StoredEvent
from shared.projections import Projection, apply_inline
from shared.registry import EventRegistry

T = TypeVar("T")
Decided = Sequence[tuple[str, BaseModel]]  # (event type, its data), as a domain decides them


class Recorded(NamedTuple):
    """One event of a loaded stream, as a fold reads it."""

    type: str
    data: Any  # the registered model (a dict for an unregistered type)
    time: datetime


@dataclass(frozen=True)
class Stream:
    """A stream as loaded: its events decoded in order, and where the next append goes."""

    id: str
    stored: list[StoredEvent]
    history: list[Recorded]

    @property
    def version(self) -> int:
        return self.stored[-1].version if self.stored else 0

    @property
    def type(self) -> str | None:
        return self.stored[0].stream_type if self.stored else None

    @property
    def tenant_id(self) -> str | None:
        return self.stored[0].event.tenantid if self.stored else None

    def is_a(self, stream_type: str, tenant_id: str | None = None) -> bool:
        """The stream exists, is of this type, and (given a tenant) is that tenant's: another
        tenant's resource does not exist for a caller."""
        return self.type == stream_type and (tenant_id is None or self.tenant_id == tenant_id)


class EventStoreLike(Protocol):
    """What the plumbing needs of a store (the PostgreSQL one and the in-memory one)."""

    async def read_stream(self, conn: Any, stream_id: str, *, as_of: datetime | None = None) -> list[StoredEvent]: ...

    async def append(
        self,
        conn: Any,
        stream_type: str,
        stream_id: str,
        expected_version: int,
        events: Sequence[CloudEvent],
        *,
        key: str | None = None,
    ) -> int: ...

    async def hold(self, conn: Any, stream_id: str, *, exclusive: bool = False) -> None: ...


@dataclass(frozen=True)
class Aggregates:
    """A service's streams: its store, its event registry, its source (`/billstream/<name>`) and
    its read models, updated in the appending transaction."""

    store: EventStoreLike
    registry: EventRegistry
    source: str
    projections: tuple[Projection, ...] = ()

    async def load(self, conn: Any, stream_id: str, *, as_of: datetime | None = None) -> Stream:
        """The stream's events (those that happened by `as_of`, if given); an empty stream if none."""
        stored = await self.store.read_stream(conn, stream_id, as_of=as_of)
        return Stream(
            stream_id, stored, [Recorded(s.event.type, self.registry.load(s.event), s.event.time) for s in stored]
        )

    def events(self, decided: Decided, *, subject: str, tenant_id: str, at: datetime | None = None) -> list[CloudEvent]:
        return [
            self.registry.new_event(t, d, source=self.source, subject=subject, tenant_id=tenant_id, time=at)
            for t, d in decided
        ]

    async def append(
        self,
        conn: Any,
        stream_type: str,
        stream_id: str,
        version: int,
        decided: Decided,
        *,
        tenant_id: str,
        at: datetime | None = None,
        key: str | None = None,
    ) -> int:
        """Record the decided facts as the next events of the stream, which must still be at
        `version` (else ConcurrencyError), and apply them to the read models; returns the
        stream's new version. In the caller's transaction."""
        events = self.events(decided, subject=stream_id, tenant_id=tenant_id, at=at)
        new_version = await self.store.append(conn, stream_type, stream_id, version, events, key=key)
        if self.projections:  # not yet in the reading order: no transaction id or position
            appended = [StoredEvent(0, 0, stream_id, stream_type, version + i + 1, e) for i, e in enumerate(events)]
            await apply_inline(conn, self.projections, appended)
        return new_version


class Pool(Protocol):
    def acquire(self) -> Any: ...


async def retry_on_conflict(
    pool: Pool,
    command: Callable[[Any], Awaitable[T]],
    *,
    attempts: int = 5,
    gave_up: Callable[[], Exception] | None = None,
) -> T:
    """Run `command(conn)` in a transaction of its own; when a stream it appends to moved on
    meanwhile, run it again from the start (it reloads, so it decides on what is there now).
    After `attempts` conflicts, raise `gave_up()` (default: the last ConcurrencyError)."""
    for attempt in range(attempts):
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await command(conn)
        except ConcurrencyError:
            if attempt == attempts - 1:
                if gave_up is None:
                    raise
                raise gave_up() from None
            await asyncio.sleep(0.01 * 2**attempt)  # let the other writer commit
    raise AssertionError("unreachable")
