"""dunning's tables: what it knows of invoices, its timers, tenant policies and test clocks.
Every function runs on the caller's connection, inside the caller's transaction."""

from datetime import datetime

import asyncpg

from shared.logs import current_correlation_id

from ..domain.policy import DEFAULT_POLICY, Policy
from ..domain.schedule import InvoiceFacts, TimerSpec
from .clock import Clock

TIMERS_CHANNEL = "billstream_dunning_timers"
PENDING = "fired_at IS NULL AND cancelled_at IS NULL"


# -- invoices ---------------------------------------------------------------------------------


async def lock_invoice(conn: asyncpg.Connection, invoice_id: str, tenant_id: str) -> asyncpg.Record:
    """The invoice's row, locked for this transaction (a placeholder if it is new here)."""
    await conn.execute(
        """INSERT INTO invoice_schedule (invoice_id, tenant_id, status, due_date, amount_due, version, updated_at)
           VALUES ($1, $2, 'UNKNOWN', NULL, 0, 0, now()) ON CONFLICT (invoice_id) DO NOTHING""",
        invoice_id,
        tenant_id,
    )
    return await conn.fetchrow("SELECT * FROM invoice_schedule WHERE invoice_id = $1 FOR UPDATE", invoice_id)


async def try_lock_invoice(conn: asyncpg.Connection, invoice_id: str) -> asyncpg.Record | None:
    """The row locked, or None if another transaction (another dunning process) holds it."""
    return await conn.fetchrow(
        "SELECT * FROM invoice_schedule WHERE invoice_id = $1 FOR UPDATE SKIP LOCKED", invoice_id
    )


async def find_invoice(conn: asyncpg.Connection, tenant_id: str, invoice_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM invoice_schedule WHERE invoice_id = $1 AND tenant_id = $2", invoice_id, tenant_id
    )


def facts_of(row: asyncpg.Record) -> InvoiceFacts:
    return InvoiceFacts(
        invoice_id=row["invoice_id"],
        tenant_id=row["tenant_id"],
        status=row["status"],
        due_date=row["due_date"],
        amount_due=row["amount_due"],
        paid_in_full=row["paid_in_full"],
    )


async def save_invoice(conn: asyncpg.Connection, facts: InvoiceFacts, version: int, at: datetime) -> None:
    await conn.execute(
        """UPDATE invoice_schedule SET status = $2, due_date = $3, amount_due = $4, version = $5, updated_at = $6
           WHERE invoice_id = $1""",
        facts.invoice_id,
        facts.status,
        facts.due_date,
        facts.amount_due,
        version,
        at,
    )


async def mark_paid_in_full(conn: asyncpg.Connection, invoice_id: str) -> None:
    await conn.execute("UPDATE invoice_schedule SET paid_in_full = true WHERE invoice_id = $1", invoice_id)


# -- timers -----------------------------------------------------------------------------------


async def schedule(conn: asyncpg.Connection, tenant_id: str, invoice_id: str, specs: list[TimerSpec]) -> None:
    """Set timers; a pending one with the same key moves, a fired one is left alone."""
    if not specs:
        return
    await conn.executemany(
        """INSERT INTO timers (tenant_id, invoice_id, kind, key, priority, fire_at, payload, correlation_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (invoice_id, key) DO UPDATE SET
              fire_at = EXCLUDED.fire_at, payload = EXCLUDED.payload, cancelled_at = NULL
            WHERE timers.fired_at IS NULL""",
        [
            (tenant_id, invoice_id, s.kind, s.key, s.priority, s.fire_at, s.payload, current_correlation_id())
            for s in specs
        ],
    )
    await notify_timers(conn)


async def notify_timers(conn: asyncpg.Connection) -> None:
    """Wake the timer engine (app/engine.py listens; delivered when the transaction commits)."""
    await conn.execute("SELECT pg_notify($1, '')", TIMERS_CHANNEL)


async def cancel(
    conn: asyncpg.Connection, invoice_id: str, kinds: frozenset[str], *, keep: frozenset[str] = frozenset()
) -> int:
    if not kinds:
        return 0
    result = await conn.execute(
        f"""UPDATE timers SET cancelled_at = now()
            WHERE invoice_id = $1 AND kind = ANY($2::text[]) AND NOT (key = ANY($3::text[])) AND {PENDING}""",
        invoice_id,
        sorted(kinds),
        sorted(keep),
    )
    return int(result.split()[-1])


async def timer_keys(conn: asyncpg.Connection, invoice_id: str) -> frozenset[str]:
    rows = await conn.fetch("SELECT key FROM timers WHERE invoice_id = $1", invoice_id)
    return frozenset(r["key"] for r in rows)


async def pending_timers(conn: asyncpg.Connection, invoice_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT * FROM timers WHERE invoice_id = $1 AND {PENDING} ORDER BY fire_at, priority, id", invoice_id
    )


async def next_due_timer(conn: asyncpg.Connection, invoice_id: str, now: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT * FROM timers WHERE invoice_id = $1 AND {PENDING} AND fire_at <= $2
            ORDER BY fire_at, priority, id LIMIT 1 FOR UPDATE""",
        invoice_id,
        now,
    )


async def mark_fired(conn: asyncpg.Connection, timer_id: int, at: datetime) -> None:
    await conn.execute("UPDATE timers SET fired_at = $2 WHERE id = $1", timer_id, at)


async def due_invoices(conn: asyncpg.Connection | asyncpg.Pool, now: datetime, limit: int) -> list[str]:
    """The invoice of each due timer, in the order the timers fall due (an invoice appears once
    per due timer); a tenant with a test clock is at its own time."""
    rows = await conn.fetch(
        """SELECT t.invoice_id FROM timers t
           LEFT JOIN test_clocks c ON c.tenant_id = t.tenant_id
           WHERE t.fired_at IS NULL AND t.cancelled_at IS NULL AND t.fire_at <= coalesce(c.frozen_time, $1)
           ORDER BY t.fire_at, t.priority, t.id LIMIT $2""",
        now,
        limit,
    )
    return [r["invoice_id"] for r in rows]


# -- policies and time ------------------------------------------------------------------------


async def load_policy(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str) -> Policy:
    stored = await conn.fetchval("SELECT policy FROM dunning_policies WHERE tenant_id = $1", tenant_id)
    return Policy.model_validate(stored) if stored else DEFAULT_POLICY


async def save_policy(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, policy: Policy, at: datetime) -> None:
    await conn.execute(
        """INSERT INTO dunning_policies (tenant_id, policy, updated_at) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = EXCLUDED.updated_at""",
        tenant_id,
        policy.dump(),
        at,
    )


async def tenant_now(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, clock: Clock) -> datetime:
    """The tenant's time: its test clock's if it has one, the service clock's otherwise."""
    frozen = await conn.fetchval("SELECT frozen_time FROM test_clocks WHERE tenant_id = $1", tenant_id)
    return frozen or clock.now()


# -- test clocks (app/simulated_clocks.py) ---------------------------------------------------


async def due_timers(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, at: datetime) -> int:
    """How many of the tenant's timers are due by `at` and not fired yet."""
    return await conn.fetchval(
        f"SELECT count(*) FROM timers WHERE tenant_id = $1 AND fire_at <= $2 AND {PENDING}", tenant_id, at
    )


async def clock_row(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, clock_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM test_clocks WHERE id = $1 AND tenant_id = $2{' FOR UPDATE' if lock else ''}",
        clock_id,
        tenant_id,
    )


async def clocks_of(pool: asyncpg.Pool, tenant_id: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM test_clocks WHERE tenant_id = $1", tenant_id)


async def insert_clock(
    conn: asyncpg.Connection, clock_id: str, tenant_id: str, name: str | None, frozen_time: datetime, now: datetime
) -> asyncpg.Record | None:
    """None if the tenant has a test clock already (one per world)."""
    return await conn.fetchrow(
        """INSERT INTO test_clocks (id, tenant_id, name, frozen_time, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (tenant_id) DO NOTHING RETURNING *""",
        clock_id,
        tenant_id,
        name,
        frozen_time,
        now,
    )


async def move_clock(conn: asyncpg.Connection, clock_id: str, to: datetime, now: datetime) -> asyncpg.Record:
    return await conn.fetchrow(
        "UPDATE test_clocks SET frozen_time = $2, updated_at = $3 WHERE id = $1 RETURNING *", clock_id, to, now
    )


async def delete_clock(conn: asyncpg.Connection, clock_id: str) -> None:
    await conn.execute("DELETE FROM test_clocks WHERE id = $1", clock_id)
