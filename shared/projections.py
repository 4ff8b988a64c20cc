"""Projections: read models built from the event store, each row change committed together with
the projection's checkpoint. Any projection can be dropped and rebuilt from the store.
"""

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable

import asyncpg

from shared.eventstore import NOTIFY_CHANNEL, Checkpoint, EventStore, StoredEvent
from shared.logs import get_logger
from shared.wakeup import Wakeup

log = get_logger(__name__)
WAITING_RETRY_S = 0.01


class Projection(ABC):
    """A read model. `apply` must be deterministic: a rebuild has to give the same rows."""

    name: str
    #: event types this projection reads; others only move its checkpoint.
    event_types: frozenset[str] = frozenset()
    #: True when each event carries the whole resource, so the last of a stream's events in a
    #: batch decides its row: catch-up then decodes only those (a rebuild decodes a fraction).
    latest_per_stream: bool = False

    @abstractmethod
    async def apply(self, conn: asyncpg.Connection, stored: StoredEvent) -> None: ...

    async def apply_batch(self, conn: asyncpg.Connection, batch: list[StoredEvent]) -> None:
        """Apply a batch of this projection's events in order. A projection may override it to
        write the batch in fewer statements, with the same rows as applying one by one."""
        for stored in batch:
            await self.apply(conn, stored)

    @abstractmethod
    async def reset(self, conn: asyncpg.Connection) -> None:
        """Empty the read model's tables (before a rebuild)."""


async def catch_up(
    pool: asyncpg.Pool, store: EventStore, projection: Projection, *, batch_size: int = 1000
) -> int:
    """Apply one batch after the checkpoint, in one transaction; returns events read."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            projection.name,
        )
        # The row lock serialises runners of the same projection (several service processes).
        after = Checkpoint(*await conn.fetchrow(
            "SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
            projection.name,
        ))
        if projection.latest_per_stream:
            heads = await store.read_heads(conn, after=after, limit=batch_size)
            latest = {h.stream_id: h.checkpoint.position for h in heads if h.event_type in projection.event_types}
            await projection.apply_batch(conn, await store.read_positions(conn, sorted(latest.values())))
        else:
            heads = await store.read_all(conn, after=after, limit=batch_size)
            await projection.apply_batch(conn, [s for s in heads if s.event.type in projection.event_types])
        if heads:
            await conn.execute(
                """UPDATE projection_checkpoints SET transaction_id = $2, position = $3, updated_at = now()
                   WHERE name = $1""",
                projection.name,
                *heads[-1].checkpoint,
            )
        return len(heads)


async def rebuild(
    pool: asyncpg.Pool,
    store: EventStore,
    projection: Projection,
    *,
    batch_size: int = 5000,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Drop the read model and replay the whole store into it; returns events replayed.

    The reset and the checkpoint reset commit together, so readers see either the old model or
    an empty one being filled, never a mix.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            projection.name,
        )
        await conn.execute(
            "SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE", projection.name
        )
        await projection.reset(conn)
        await conn.execute(
            "UPDATE projection_checkpoints SET transaction_id = '0', position = 0, updated_at = now() WHERE name = $1",
            projection.name,
        )
    async with pool.acquire() as conn:
        total = await store.last_position(conn)
    done = 0
    while n := await catch_up(pool, store, projection, batch_size=batch_size):
        done += n
        if on_progress:
            on_progress(done, total)
    return done


class ProjectionRunner:
    """Keeps projections up to date: woken by the store's NOTIFY, polling as a fallback."""

    def __init__(
        self, dsn: str, pool: asyncpg.Pool, store: EventStore, projections: list[Projection],
        *, poll_interval: float = 1.0,
    ) -> None:
        self.dsn, self.pool, self.store = dsn, pool, store
        self.projections, self.poll_interval = projections, poll_interval
        self._wakeup = Wakeup(poll_interval)

    async def run(self) -> None:
        listener = await asyncpg.connect(self.dsn)
        try:
            await self._wakeup.listen(listener, NOTIFY_CHANNEL)
            while True:
                try:
                    busy = False
                    for projection in self.projections:
                        busy |= await catch_up(self.pool, self.store, projection) > 0
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # database away or a bug in apply: retry, loudly
                    log.error("projection failed, retrying", error=repr(exc))
                    await asyncio.sleep(self.poll_interval)
                    continue
                if not busy:
                    await self._idle()
        finally:
            await listener.close()

    async def _idle(self) -> None:
        async with self.pool.acquire() as conn:
            waiting = await self.store.has_unreadable(conn)
        if waiting:  # their commit's notification has come and gone: look again soon
            await asyncio.sleep(WAITING_RETRY_S)
        else:
            await self._wakeup.wait()
