"""Projections: read models built from the event store, each row change committed together with
the projection's checkpoint. Any projection can be dropped and rebuilt from the store.
"""

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from shared import deadletters
from shared.deadletters import DeadLetter
from shared.eventstore import NOTIFY_CHANNEL, Checkpoint, EventHead, EventStore, StoredEvent
from shared.failures import Retrying, backoff, is_transient
from shared.logs import get_logger
from shared.wakeup import Wakeup

log = get_logger(__name__)
# Events committed behind a transaction still open are looked at again soon, backing off while
# that transaction stays open (one long transaction anywhere in the cluster holds every
# projection back), and the oldest open transaction is logged this often while it does.
WAITING_RETRY_S = 0.01
WAITING_RETRY_MAX_S = 0.5
HELD_BACK_LOG_EVERY_S = 10.0


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


async def catch_up(pool: asyncpg.Pool, store: EventStore, projection: Projection, *, batch_size: int = 1000) -> int:
    """Apply one batch after the checkpoint, in one transaction; returns events read.

    A batch that fails deterministically is applied again event by event (a savepoint each), so
    only the event that fails is parked in dead_letters and the checkpoint moves past it: one
    tenant's bad event never stops the others'. Transient failures are raised, to be retried.
    """
    try:
        return await _catch_up(pool, store, projection, batch_size, _apply_all)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("projection batch failed, applying it event by event", projection=projection.name, error=repr(exc))
    return await _catch_up(pool, store, projection, batch_size, _apply_each)


async def _catch_up(
    pool: asyncpg.Pool,
    store: EventStore,
    projection: Projection,
    batch_size: int,
    apply: Callable[[asyncpg.Connection, Projection, list[StoredEvent]], Awaitable[None]],
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            projection.name,
        )
        # The row lock serialises runners of the same projection (several service processes).
        after = Checkpoint(
            *await conn.fetchrow(
                "SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
                projection.name,
            )
        )
        heads: list[EventHead] | list[StoredEvent]
        if projection.latest_per_stream:
            heads = await store.read_heads(conn, after=after, limit=batch_size)
            await apply(conn, projection, await store.read_positions(conn, _latest_positions(projection, heads)))
        else:
            heads = await store.read_all(conn, after=after, limit=batch_size)
            await apply(conn, projection, [s for s in heads if s.event.type in projection.event_types])
        if heads:
            await conn.execute(
                """UPDATE projection_checkpoints SET transaction_id = $2, position = $3, updated_at = now()
                   WHERE name = $1""",
                projection.name,
                *heads[-1].checkpoint,
            )
        return len(heads)


def _latest_positions(projection: Projection, heads: list[EventHead]) -> list[int]:
    """Where each stream's highest version among the projection's events is. By version, not
    reading order: a transaction that took its id early can commit a stream's later version."""
    latest: dict[str, EventHead] = {}
    for h in heads:
        if h.event_type in projection.event_types and h.version > getattr(latest.get(h.stream_id), "version", 0):
            latest[h.stream_id] = h
    return sorted(h.checkpoint.position for h in latest.values())


async def apply_inline(
    conn: asyncpg.Connection, projections: Sequence[Projection], appended: list[StoredEvent]
) -> None:
    """Apply just-appended events to the service's read models in the appending transaction, so
    a read after the command answered sees what it wrote (DESIGN.md, read-your-writes).

    The runner applies the same events again later, in commit order; projections are idempotent
    and guarded by stream version, so the second write changes nothing. A projection that fails
    deterministically here is skipped under its savepoint: the command still commits and the
    runner meets the same failure and parks that event.
    """
    for projection in projections:
        batch = [s for s in appended if s.event.type in projection.event_types]
        if projection.latest_per_stream:
            batch = batch[-1:]
        if not batch:
            continue
        try:
            async with conn.transaction():  # a savepoint
                await projection.apply_batch(conn, batch)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("inline projection failed, left to the runner", projection=projection.name, error=repr(exc))


async def _apply_all(conn: asyncpg.Connection, projection: Projection, batch: list[StoredEvent]) -> None:
    await projection.apply_batch(conn, batch)


async def _apply_each(conn: asyncpg.Connection, projection: Projection, batch: list[StoredEvent]) -> None:
    """Each event under its own savepoint; one that fails deterministically is parked, in the
    same transaction that moves the checkpoint past it."""
    for stored in batch:
        try:
            async with conn.transaction():  # a savepoint
                await projection.apply_batch(conn, [stored])
        except Exception as exc:
            if is_transient(exc):
                raise
            await _park(conn, projection, stored, repr(exc))


async def _park(conn: asyncpg.Connection, projection: Projection, stored: StoredEvent, error: str) -> None:
    id = await deadletters.park(
        conn,
        source=deadletters.PROJECTION,
        name=projection.name,
        payload=stored.event.to_json(),
        error=error,
        event_id=stored.event.id,
        stream_id=stored.stream_id,
    )
    log.error(
        "event parked in dead_letters",
        dead_letter=id,
        projection=projection.name,
        stream=stored.stream_id,
        event_id=stored.event.id,
        tenant=stored.event.tenantid,
        error=error[:500],
    )


async def replay(pool: asyncpg.Pool, store: EventStore, projection: Projection, letter: DeadLetter) -> int:
    """Apply a parked event again (after a fix) and mark it replayed, in one transaction;
    returns the events applied. Raises if it still fails.

    The stream's later events that the projection already applied are applied again after it,
    so the row ends as the stream's latest state, never as the parked event's older one (every
    projection here writes whole snapshots); a latest-per-stream projection applies only the last.
    """
    async with pool.acquire() as conn, conn.transaction():
        upto = Checkpoint(
            *await conn.fetchrow(
                "SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
                projection.name,
            )
        )
        # A projection parks stored events, so its letters name their stream; one without is in no stream.
        stream = await store.read_stream(conn, letter.stream_id) if letter.stream_id is not None else []
        matches = [s.checkpoint for s in stream if s.event.id == letter.event_id]
        if not matches:
            raise LookupError(f"event {letter.event_id} is not in stream {letter.stream_id}")
        parked = matches[0]
        todo = [s for s in stream if parked <= s.checkpoint <= upto and s.event.type in projection.event_types]
        if projection.latest_per_stream:
            todo = todo[-1:]
        await projection.apply_batch(conn, todo)
        await deadletters.resolve(conn, letter.id, "replayed")
        return len(todo)


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
        await conn.execute("SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE", projection.name)
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
        self,
        dsn: str,
        pool: asyncpg.Pool,
        store: EventStore,
        projections: list[Projection],
        *,
        poll_interval: float = 1.0,
    ) -> None:
        self.dsn, self.pool, self.store = dsn, pool, store
        self.projections, self.poll_interval = projections, poll_interval
        self._wakeup = Wakeup(poll_interval)
        self.retrying: dict[str, Retrying] = {}  # by projection name, shown by /ready
        self._waiting_delay, self._held_back_logged = WAITING_RETRY_S, 0.0

    async def run(self) -> None:
        listener = await asyncpg.connect(self.dsn)
        try:
            await self._wakeup.listen(listener, NOTIFY_CHANNEL)
            # A listener lost with its server is not reconnected here: ending lets the
            # supervisor start the runner again with a new one.
            while not listener.is_closed():
                if await self._round():
                    self._waiting_delay = WAITING_RETRY_S
                else:
                    await self._idle()
        finally:
            await listener.close()

    async def _round(self) -> bool:
        """One batch of every projection; True if there may be more to do at once."""
        busy = False
        for projection in self.projections:
            try:
                busy |= await catch_up(self.pool, self.store, projection) > 0
                self.retrying.pop(projection.name, None)
            except Exception as exc:  # noqa: BLE001 - logged and retried; one failing projection holds up no other
                await self._failed(projection, exc)
                busy = True
        return busy

    async def _failed(self, projection: Projection, exc: Exception) -> None:
        """The database away (transient), or a failure no single event explains (deterministic,
        for example an envelope in the store that no longer decodes): retry after a backoff."""
        retrying = self.retrying.setdefault(projection.name, Retrying("projection", projection.name, ""))
        retrying.attempts, retrying.error = retrying.attempts + 1, repr(exc)
        attempt = retrying.attempts
        level = log.warning if is_transient(exc) else log.error
        level("projection failed, retrying", projection=projection.name, attempt=attempt, error=repr(exc))
        await asyncio.sleep(backoff(attempt, cap=max(self.poll_interval, 5.0)))

    async def _idle(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                waiting = await self.store.has_unreadable(conn)
                # Named only once the wait has lasted (backed off to the longest delay): brief
                # waits behind concurrent writers are normal and not worth a warning.
                if (
                    waiting
                    and self._waiting_delay >= WAITING_RETRY_MAX_S
                    and time.monotonic() - self._held_back_logged > HELD_BACK_LOG_EVERY_S
                ):
                    self._held_back_logged = time.monotonic()
                    await _log_oldest_transaction(conn)
        except Exception as exc:
            if not is_transient(exc):
                raise
            waiting = True  # the database is away: the next round retries, with a backoff
        if waiting:  # their commit's notification has come and gone: look again soon
            await asyncio.sleep(self._waiting_delay)
            self._waiting_delay = min(self._waiting_delay * 2, WAITING_RETRY_MAX_S)
        else:
            self._waiting_delay = WAITING_RETRY_S
            await self._wakeup.wait()


async def _log_oldest_transaction(conn: asyncpg.Connection) -> None:
    """Name the transaction that holds committed events back (transaction ids are cluster-wide,
    so it may be in any database of the server)."""
    oldest = await conn.fetchrow(
        """SELECT pid, datname, state, extract(epoch FROM now() - xact_start) AS age_s
           FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
             AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)
           ORDER BY xact_start LIMIT 1"""
    )
    if oldest is not None:
        log.warning(
            "projections held back by an open transaction",
            pid=oldest["pid"],
            database=oldest["datname"],
            state=oldest["state"],
            age_s=round(float(oldest["age_s"]), 1),
        )
