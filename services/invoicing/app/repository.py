"""Invoicing's SQL beside its event streams: document numbers, invoice references, customers'
external ids, what dunning said of each invoice, and credit notes by id. Each function runs on the caller's connection (and
so in its transaction)."""

import asyncpg

from shared.errors import Conflict

from ..domain import invoice as inv


async def next_number(conn: asyncpg.Connection, tenant: str, kind: str, year: int) -> str:
    """Per-tenant, per-year sequence. The row lock is held to commit, and a rolled-back
    transaction gives its number back: no gaps, no duplicates."""
    value = await conn.fetchval(
        """INSERT INTO document_sequences (tenant_id, kind, year, last_value) VALUES ($1, $2, $3, 1)
           ON CONFLICT (tenant_id, kind, year) DO UPDATE SET last_value = document_sequences.last_value + 1
           RETURNING last_value""",
        tenant,
        kind,
        year,
    )
    try:
        return await claim_number(conn, tenant, f"{kind}-{year}-{value:06d}")
    except Conflict:
        pass
    # An imported number sits on the next value: step over every taken one in one query.
    value = await conn.fetchval(
        """UPDATE document_sequences SET last_value = (
               SELECT v FROM generate_series($4::bigint + 1, $4::bigint + 1000000) AS v
               WHERE NOT EXISTS (SELECT 1 FROM document_numbers d WHERE d.tenant_id = $1
                                 AND d.number = $2 || '-' || $3 || '-' || lpad(v::text, greatest(6, length(v::text)), '0'))
               LIMIT 1)  -- generate_series yields in order, so the first free value
           WHERE tenant_id = $1 AND kind = $2 AND year = $3 RETURNING last_value""",
        tenant,
        kind,
        year,
        value,
    )
    return await claim_number(conn, tenant, f"{kind}-{year}-{value:06d}")


async def _claim(conn: asyncpg.Connection, taken: Conflict, statement: str, *args: object) -> None:
    """Insert a row a unique key guards, under a savepoint: `taken` if another holds the key."""
    try:
        async with conn.transaction():
            await conn.execute(statement, *args)
    except asyncpg.UniqueViolationError as exc:
        raise taken from exc


async def claim_number(conn: asyncpg.Connection, tenant: str, number: str) -> str:
    taken = Conflict("number_taken", f"Number {number} is already used.", field="number")
    await _claim(conn, taken, "INSERT INTO document_numbers (tenant_id, number) VALUES ($1, $2)", tenant, number)
    return number


async def release_reference(conn: asyncpg.Connection, tenant: str, invoice_id: str) -> None:
    await conn.execute("DELETE FROM invoice_references WHERE tenant_id = $1 AND invoice_id = $2", tenant, invoice_id)


async def claim_reference(conn: asyncpg.Connection, tenant: str, reference: str | None, invoice_id: str) -> None:
    if reference:
        taken = Conflict("reference_taken", f"Another invoice already has reference '{reference}'.", field="reference")
        sql = "INSERT INTO invoice_references (tenant_id, reference, invoice_id) VALUES ($1, $2, $3)"
        await _claim(conn, taken, sql, tenant, reference, invoice_id)


async def release_external_id(conn: asyncpg.Connection, tenant: str, customer_id: str) -> None:
    await conn.execute(
        "DELETE FROM customer_external_ids WHERE tenant_id = $1 AND customer_id = $2", tenant, customer_id
    )


async def claim_external_id(conn: asyncpg.Connection, tenant: str, external_id: str | None, customer_id: str) -> None:
    if external_id:
        taken = Conflict(
            "external_id_taken", f"Another customer already has externalId '{external_id}'.", field="externalId"
        )
        sql = "INSERT INTO customer_external_ids (tenant_id, external_id, customer_id) VALUES ($1, $2, $3)"
        await _claim(conn, taken, sql, tenant, external_id, customer_id)


async def claim_plan_code(conn: asyncpg.Connection, tenant: str, code: str, plan_id: str) -> None:
    taken = Conflict("plan_code_taken", f"Another plan already has code '{code}'.", field="code")
    sql = "INSERT INTO plan_codes (tenant_id, code, plan_id) VALUES ($1, $2, $3)"
    await _claim(conn, taken, sql, tenant, code, plan_id)


async def release_plan_code(conn: asyncpg.Connection, plan_id: str) -> None:
    await conn.execute("DELETE FROM plan_codes WHERE plan_id = $1", plan_id)


async def subscriptions_on_plan(conn: asyncpg.Connection, tenant: str, plan_id: str) -> int:
    """Subscriptions still running on the plan or moving to it at their period's end."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM subscription_list WHERE tenant_id = $1 AND (plan_id = $2 OR next_plan_id = $2)
               AND status NOT IN ('CANCELED', 'ENDED')""",
            tenant,
            plan_id,
        )
    )


async def running_subscriptions(conn: asyncpg.Connection, tenant: str, customer_id: str) -> int:
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM subscription_list WHERE tenant_id = $1 AND customer_id = $2
               AND status NOT IN ('CANCELED', 'ENDED')""",
            tenant,
            customer_id,
        )
    )


async def customer_with_email(conn: asyncpg.Connection, tenant: str, email: str) -> str | None:
    """The tenant's oldest customer with this e-mail (stored lower-case), if any."""
    return await conn.fetchval(
        """SELECT customer_id FROM customer_list WHERE tenant_id = $1 AND email = $2 AND NOT deleted
           ORDER BY created_at, customer_id LIMIT 1""",
        tenant,
        email.lower(),
    )


async def unsettled_invoices(conn: asyncpg.Connection, tenant: str, customer_id: str) -> int:
    """The customer's invoices in draft or with money due, from the list (written with each command)."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM invoice_list WHERE tenant_id = $1 AND customer_id = $2
               AND status = ANY($3::text[]) AND NOT deleted""",
            tenant,
            customer_id,
            [inv.DRAFT, *inv.OPEN],
        )
    )


async def insert_offline_payment(conn: asyncpg.Connection, payment_id: str, tenant: str, invoice_id: str) -> None:
    await conn.execute(
        "INSERT INTO offline_payments (payment_id, tenant_id, invoice_id) VALUES ($1, $2, $3)",
        payment_id,
        tenant,
        invoice_id,
    )


async def offline_payment_recorded(conn: asyncpg.Connection, payment_id: str) -> None:
    """Payments recorded it (its payment.succeeded came back)."""
    await conn.execute(
        "UPDATE offline_payments SET recorded_at = now() WHERE payment_id = $1 AND recorded_at IS NULL", payment_id
    )


async def forget_recorded_offline_payment(pool: asyncpg.Pool, payment_id: str) -> bool:
    """True (and the row gone: its waiter is answered) once payments has recorded it."""
    return bool(
        await pool.fetchval(
            "DELETE FROM offline_payments WHERE payment_id = $1 AND recorded_at IS NOT NULL RETURNING true", payment_id
        )
    )


async def dunning_of(conn: asyncpg.Connection, invoice_ids: list[str]) -> dict[str, tuple]:
    """invoice id → (dunning status, next retry), for the invoices dunning has spoken of."""
    rows = await conn.fetch(
        "SELECT invoice_id, status, next_retry_at FROM invoice_dunning WHERE invoice_id = ANY($1)", invoice_ids
    )
    return {r["invoice_id"]: (r["status"], r["next_retry_at"]) for r in rows}


async def record_dunning(
    conn: asyncpg.Connection,
    invoice_id: str,
    tenant: str,
    *,
    status: str,
    attempts: int,
    next_retry_at: str | None,
    version: int,
) -> None:
    """What dunning says of an invoice, newest version wins (events may come again or out of order)."""
    await conn.execute(
        """INSERT INTO invoice_dunning (invoice_id, tenant_id, status, attempts, next_retry_at, version)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (invoice_id) DO UPDATE SET status = EXCLUDED.status, attempts = EXCLUDED.attempts,
             next_retry_at = EXCLUDED.next_retry_at, version = EXCLUDED.version
           WHERE invoice_dunning.version < EXCLUDED.version""",
        invoice_id,
        tenant,
        status,
        attempts,
        next_retry_at,
        version,
    )


def show_dunning(view: dict, dunning: dict[str, tuple]) -> dict:
    view["dunningStatus"], view["nextRetryAt"] = dunning.get(view["id"], (None, None))
    return view


async def credit_note(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, credit_note_id: str) -> dict | None:
    return await conn.fetchval(
        "SELECT view FROM credit_notes WHERE credit_note_id = $1 AND tenant_id = $2", credit_note_id, tenant
    )
