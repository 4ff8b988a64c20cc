"""Payments' tables: charge and refund jobs, the invoices it may collect, its payments per
invoice, the payment list, checkout sessions, saved methods, provider callbacks and accounts.
Each function runs one statement on the connection (or pool) it is given, inside whatever
transaction the caller holds."""

import asyncpg

ACCOUNT_COLUMNS = "account_id, provider, currencies, priority, credentials"  # what Accounts.from_row reads


# -- the event store ------------------------------------------------------------------------


async def first_event(conn, payment_id: str) -> asyncpg.Record | None:
    """The payment's first event's id and correlation id (`event_id`, `cid`)."""
    return await conn.fetchrow(
        "SELECT event_id, envelope->>'correlationid' AS cid FROM events WHERE stream_id = $1 AND version = 1",
        payment_id,
    )


# -- invoices and their payments ------------------------------------------------------------


async def find_payable_invoice(conn, tenant_id: str, invoice_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    """`lock`: one payment decision per invoice at a time."""
    return await conn.fetchrow(
        f"""SELECT * FROM payable_invoices WHERE invoice_id = $1 AND tenant_id = $2
            {"FOR UPDATE" if lock else ""}""",
        invoice_id,
        tenant_id,
    )


async def invoice_status(pool, tenant_id: str, invoice_id: str) -> str | None:
    """The status billing.invoices last brought for the tenant's invoice; None before it came."""
    return await pool.fetchval(
        "SELECT status FROM payable_invoices WHERE invoice_id = $1 AND tenant_id = $2", invoice_id, tenant_id
    )


async def invoice_for_link(conn, invoice_id: str) -> asyncpg.Record | None:
    """A signed pay link names only the invoice: its `tenant_id` and `snapshot`."""
    return await conn.fetchrow("SELECT tenant_id, snapshot FROM payable_invoices WHERE invoice_id = $1", invoice_id)


async def upsert_payable_invoice(
    conn,
    invoice_id: str,
    tenant_id: str,
    customer_id: str,
    status: str,
    currency: str,
    total: int,
    amount_due: int,
    version: int,
    updated_at,
    snapshot: dict | None,
    allow_partial_payments: bool,
    auto_collection: bool,
) -> None:
    """`version` (the event's sequence) makes older or repeated events lose; an invoice never
    changes tenant."""
    await conn.execute(
        """INSERT INTO payable_invoices (invoice_id, tenant_id, customer_id, status, currency, total,
                                         amount_due, version, updated_at, snapshot, allow_partial_payments,
                                         auto_collection)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (invoice_id) DO UPDATE SET
             customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, currency = EXCLUDED.currency,
             total = EXCLUDED.total, amount_due = EXCLUDED.amount_due, version = EXCLUDED.version,
             updated_at = EXCLUDED.updated_at, snapshot = EXCLUDED.snapshot,
             allow_partial_payments = EXCLUDED.allow_partial_payments, auto_collection = EXCLUDED.auto_collection
           WHERE payable_invoices.version < EXCLUDED.version AND payable_invoices.tenant_id = EXCLUDED.tenant_id""",
        invoice_id,
        tenant_id,
        customer_id,
        status,
        currency,
        total,
        amount_due,
        version,
        updated_at,
        snapshot,
        allow_partial_payments,
        auto_collection,
    )


async def acknowledge_payment(conn, invoice_id: str, payment_id: str) -> None:
    """From now on the invoice snapshot's amountDue counts this payment (see unacknowledged_amount)."""
    await conn.execute(
        "INSERT INTO invoice_payment_acks VALUES ($1, $2) ON CONFLICT DO NOTHING", invoice_id, payment_id
    )


async def invoice_snapshot(conn, invoice_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT snapshot FROM payable_invoices WHERE invoice_id = $1", invoice_id)


async def unacknowledged_amount(conn, invoice_id: str) -> int:
    """Our payments that are taken or in flight and that the invoice snapshot does not count yet."""
    return await conn.fetchval(
        """SELECT coalesce(sum(p.amount), 0) FROM invoice_payments p
           WHERE p.invoice_id = $1 AND p.status <> 'FAILED'
             AND NOT EXISTS (SELECT 1 FROM invoice_payment_acks a
                             WHERE a.invoice_id = p.invoice_id AND a.payment_id = p.payment_id)""",
        invoice_id,
    )


async def save_invoice_payment(
    conn, payment_id: str, invoice_id: str, tenant_id: str, amount: int, status: str
) -> None:
    await conn.execute(
        """INSERT INTO invoice_payments (payment_id, invoice_id, tenant_id, amount, status)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (payment_id) DO UPDATE SET status = EXCLUDED.status""",
        payment_id,
        invoice_id,
        tenant_id,
        amount,
        status,
    )


async def lock_invoice_payment(conn, payment_id: str) -> None:
    """Serializes refund decisions on one payment."""
    await conn.execute("SELECT 1 FROM invoice_payments WHERE payment_id = $1 FOR UPDATE", payment_id)


async def invoice_payments(conn, invoice_id: str) -> list[asyncpg.Record]:
    """Our payments of the invoice (`payment_id`, `amount`, `status`), as the hosted page lists them."""
    return await conn.fetch(
        """SELECT payment_id, amount, status FROM invoice_payments WHERE invoice_id = $1
           ORDER BY payment_id""",
        invoice_id,
    )


# -- checkout sessions ------------------------------------------------------------------------


async def checkout_session(conn, token: str) -> asyncpg.Record | None:
    """The session a hosted-page link's token opens, expired or not."""
    return await conn.fetchrow("SELECT * FROM checkout_sessions WHERE token = $1", token)


# -- saved methods ----------------------------------------------------------------------------


async def saved_method(conn, tenant_id: str, customer_id: str) -> asyncpg.Record | None:
    """The customer's newest attached method."""
    return await conn.fetchrow(
        """SELECT method_id, provider, type FROM payment_methods
           WHERE tenant_id = $1 AND customer_id = $2 AND detached_at IS NULL
           ORDER BY created_at DESC LIMIT 1""",
        tenant_id,
        customer_id,
    )


async def attached_method(conn, tenant_id: str, method_id: str) -> asyncpg.Record | None:
    """The tenant's method, unless detached (`method_id`, `provider`, `type`)."""
    return await conn.fetchrow(
        """SELECT method_id, provider, type FROM payment_methods
           WHERE method_id = $1 AND tenant_id = $2 AND detached_at IS NULL""",
        method_id,
        tenant_id,
    )


async def insert_method(
    conn, method_id: str, tenant_id: str, customer_id: str, provider: str, method_type: str, label: str, token: bytes
) -> asyncpg.Record:
    """`token`: the provider's token, encrypted by the vault."""
    return await conn.fetchrow(
        """INSERT INTO payment_methods (method_id, tenant_id, customer_id, provider, type, label, token)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *""",
        method_id,
        tenant_id,
        customer_id,
        provider,
        method_type,
        label,
        token,
    )


async def detach_method(pool, tenant_id: str, method_id: str) -> asyncpg.Record | None:
    """The method, detached (a second detach keeps the first time); None if not the tenant's."""
    return await pool.fetchrow(
        """UPDATE payment_methods SET detached_at = coalesce(detached_at, now())
           WHERE method_id = $1 AND tenant_id = $2 RETURNING *""",
        method_id,
        tenant_id,
    )


async def method_token(conn, method_id: str) -> bytes | str | None:
    """The method's provider token, encrypted (the vault decrypts it)."""
    return await conn.fetchval("SELECT token FROM payment_methods WHERE method_id = $1", method_id)


# -- charge jobs ------------------------------------------------------------------------------


async def insert_charge_job(
    conn,
    payment_id: str,
    tenant_id: str,
    account_id: str,
    method_id: str | None,
    instrument,
    idempotency_key: str,
    return_url: str | None,
    delay_s: float,
) -> None:
    """`delay_s`: 0 for the worker to take it at once; a lease when the caller sends it itself."""
    await conn.execute(
        """INSERT INTO charge_jobs (payment_id, tenant_id, account_id, method_id, instrument, idempotency_key,
                                    return_url, next_attempt_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))""",
        payment_id,
        tenant_id,
        account_id,
        method_id,
        instrument,
        idempotency_key,
        return_url,
        delay_s,
    )


async def notify_charge_job(conn, payment_id: str) -> None:
    """Wake the charge worker (app/worker.py listens; delivered when the transaction commits)."""
    await conn.execute("SELECT pg_notify('payments_charge_jobs', $1)", payment_id)


async def claim_charge_job(pool, payment_id: str, lease_s: float, claimed: bool) -> asyncpg.Record | None:
    """The job, leased for `lease_s`, if it is due (or `claimed` by its creator) and not done;
    the UPDATE makes two workers never send it at the same time."""
    return await pool.fetchrow(
        """UPDATE charge_jobs SET attempts = attempts + 1,
                  next_attempt_at = now() + make_interval(secs => $2)
           WHERE payment_id = $1 AND NOT done AND ($3 OR next_attempt_at <= now())
           RETURNING *""",
        payment_id,
        lease_s,
        claimed,
    )


async def mark_charge_done(conn, payment_id: str) -> None:
    await conn.execute("UPDATE charge_jobs SET done = true WHERE payment_id = $1", payment_id)


async def reference_taken(conn, reference: str | None, payment_id: str) -> bool:
    """Whether another payment's charge has this provider reference."""
    return bool(
        reference
        and await conn.fetchval(
            "SELECT 1 FROM charge_jobs WHERE provider_reference = $1 AND payment_id <> $2 LIMIT 1",
            reference,
            payment_id,
        )
    )


async def set_provider_reference(conn, payment_id: str, reference: str) -> None:
    await conn.execute("UPDATE charge_jobs SET provider_reference = $2 WHERE payment_id = $1", payment_id, reference)


async def retry_charge_job(pool, payment_id: str, delay_s: float, error: str) -> None:
    await pool.execute(
        """UPDATE charge_jobs SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
           WHERE payment_id = $1""",
        payment_id,
        delay_s,
        error,
    )


async def look_again(pool, payment_id: str, delay_s: float) -> None:
    """Reconcile an unsettled charge after `delay_s` (its callback may never come)."""
    await pool.execute(
        "UPDATE charge_jobs SET next_attempt_at = now() + make_interval(secs => $2) WHERE payment_id = $1",
        payment_id,
        delay_s,
    )


async def due_charge_jobs(pool, limit: int) -> list[str]:
    rows = await pool.fetch(
        """SELECT payment_id FROM charge_jobs WHERE NOT done AND next_attempt_at <= now()
           ORDER BY next_attempt_at LIMIT $1""",
        limit,
    )
    return [r["payment_id"] for r in rows]


async def charge_reference(conn, payment_id: str) -> str | None:
    return await conn.fetchval("SELECT provider_reference FROM charge_jobs WHERE payment_id = $1", payment_id)


async def charge_account(conn, payment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT account_id, provider_reference FROM charge_jobs WHERE payment_id = $1", payment_id
    )


async def charged_through(conn, payment_id: str, default_account: str) -> asyncpg.Record | None:
    """The charge's account (`default_account` when none is recorded), tenant and provider reference."""
    return await conn.fetchrow(
        """SELECT coalesce(account_id, $2) AS account_id, tenant_id, provider_reference
             FROM charge_jobs WHERE payment_id = $1""",
        payment_id,
        default_account,
    )


# -- refund jobs ------------------------------------------------------------------------------


async def refundable_payments(conn, tenant_id: str, invoice_id: str) -> list[asyncpg.Record]:
    """The invoice's payments that can still give money back, newest first, with what is left of
    each once refunds still in flight are counted."""
    return await conn.fetch(
        """SELECT p.payment_id, p.amount - (p.view->>'amountRefunded')::bigint
                    - coalesce((SELECT sum(r.amount) FROM refund_jobs r
                                WHERE r.payment_id = p.payment_id AND r.state = 'pending'), 0) AS left
           FROM payment_list p
           WHERE p.tenant_id = $1 AND p.invoice_id = $2 AND p.status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED')
           ORDER BY p.created_at DESC, p.payment_id DESC""",
        tenant_id,
        invoice_id,
    )


async def refunds_in_flight(conn, payment_id: str) -> int:
    """The amount of the payment's refunds still pending: reserved against what may be refunded."""
    return await conn.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM refund_jobs WHERE payment_id = $1 AND state = 'pending'", payment_id
    )


async def insert_refund_job(
    conn, refund_id: str, payment_id: str, tenant_id: str, amount: int, reason: str, delay_s: float
) -> None:
    await conn.execute(
        """INSERT INTO refund_jobs (refund_id, payment_id, tenant_id, amount, reason, next_attempt_at)
           VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))""",
        refund_id,
        payment_id,
        tenant_id,
        amount,
        reason,
        delay_s,
    )


async def claim_refund_job(pool, refund_id: str, lease_s: float, claimed: bool) -> asyncpg.Record | None:
    """Like claim_charge_job, for a pending refund."""
    return await pool.fetchrow(
        """UPDATE refund_jobs SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
           WHERE refund_id = $1 AND state = 'pending' AND ($3 OR next_attempt_at <= now()) RETURNING *""",
        refund_id,
        lease_s,
        claimed,
    )


async def retry_refund_job(pool, refund_id: str, delay_s: float, error: str) -> None:
    await pool.execute(
        """UPDATE refund_jobs SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
           WHERE refund_id = $1""",
        refund_id,
        delay_s,
        error,
    )


async def refuse_refund_job(pool, refund_id: str, error: str) -> None:
    await pool.execute(
        "UPDATE refund_jobs SET state = 'refused', last_error = $2 WHERE refund_id = $1", refund_id, error
    )


async def refund_succeeded(conn, refund_id: str) -> None:
    await conn.execute("UPDATE refund_jobs SET state = 'succeeded' WHERE refund_id = $1", refund_id)


async def due_refund_jobs(pool, limit: int) -> list[str]:
    rows = await pool.fetch(
        """SELECT refund_id FROM refund_jobs WHERE state = 'pending' AND next_attempt_at <= now()
           ORDER BY next_attempt_at LIMIT $1""",
        limit,
    )
    return [r["refund_id"] for r in rows]


# -- provider callbacks -----------------------------------------------------------------------


async def record_provider_event(
    conn, provider: str, account_id: str, event_id: str, payment_id: str | None
) -> bool | None:
    """True the first time this provider event is seen; None for a duplicate."""
    return await conn.fetchval(
        """INSERT INTO provider_events (provider, account_id, event_id, payment_id) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING RETURNING true""",
        provider,
        account_id,
        event_id,
        payment_id,
    )


async def callback_account(pool, account_id: str, provider: str) -> asyncpg.Record | None:
    """The account a callback path names, inactive or deleted too: the payments charged through
    it before still settle."""
    return await pool.fetchrow(
        f"SELECT {ACCOUNT_COLUMNS} FROM provider_accounts WHERE account_id = $1 AND provider = $2",
        account_id,
        provider,
    )


async def two_active_accounts(pool, provider: str) -> list[asyncpg.Record]:
    """At most two of the provider's active accounts: enough to tell one from several."""
    return await pool.fetch(
        f"SELECT {ACCOUNT_COLUMNS} FROM provider_accounts WHERE provider = $1 AND active AND deleted_at IS NULL LIMIT 2",
        provider,
    )


# -- provider accounts ------------------------------------------------------------------------


# -- provider accounts and checkout sessions, for app/accounts.py and app/checkout.py ---------


async def active_accounts_of(conn, tenant_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT account_id, provider, currencies, priority, credentials FROM provider_accounts
           WHERE tenant_id = $1 AND active AND deleted_at IS NULL ORDER BY created_at""",
        tenant_id,
    )


async def account_of(conn, tenant_id: str, account_id: str, *, deleted: bool = False) -> asyncpg.Record | None:
    """The tenant's account; a deleted one only with `deleted` (its payments' refunds need it)."""
    return await conn.fetchrow(
        f"""SELECT * FROM provider_accounts WHERE account_id = $1 AND tenant_id = $2
            {"" if deleted else "AND deleted_at IS NULL"}""",
        account_id,
        tenant_id,
    )


async def update_account(conn, tenant_id: str, account_id: str, changes: dict) -> asyncpg.Record | None:
    """`changes`: column → value, column names from code (currencies, priority, active, credentials)."""
    sets = ", ".join(f"{column} = ${n}" for n, column in enumerate(changes, start=3))
    return await conn.fetchrow(
        f"""UPDATE provider_accounts SET {sets}, updated_at = now()
            WHERE account_id = $1 AND tenant_id = $2 AND deleted_at IS NULL RETURNING *""",
        account_id,
        tenant_id,
        *changes.values(),
    )


async def delete_account(conn, tenant_id: str, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """UPDATE provider_accounts SET active = false, deleted_at = now()
           WHERE account_id = $1 AND tenant_id = $2 AND deleted_at IS NULL RETURNING *""",
        account_id,
        tenant_id,
    )


async def insert_account(
    conn,
    account_id: str,
    tenant_id: str,
    provider: str,
    currencies: list[str],
    priority: int,
    credentials: bytes,
    active: bool = True,
) -> asyncpg.Record:
    """`credentials`: already sealed by the vault."""
    return await conn.fetchrow(
        """INSERT INTO provider_accounts (account_id, tenant_id, provider, currencies, priority, credentials, active)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *""",
        account_id,
        tenant_id,
        provider,
        currencies,
        priority,
        credentials,
        active,
    )


async def insert_checkout_session(
    conn,
    session_id: str,
    token: str,
    tenant_id: str,
    invoice_id: str,
    return_url: str | None,
    expires_at,
    from_link: bool,
) -> None:
    await conn.execute(
        """INSERT INTO checkout_sessions (session_id, token, tenant_id, invoice_id, return_url, expires_at, from_link)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        session_id,
        token,
        tenant_id,
        invoice_id,
        return_url,
        expires_at,
        from_link,
    )


async def link_session_token(conn, tenant_id: str, invoice_id: str) -> str | None:
    """The newest session a pay link opened for the invoice that is still good for an hour."""
    return await conn.fetchval(
        """SELECT token FROM checkout_sessions WHERE tenant_id = $1 AND invoice_id = $2 AND from_link
             AND expires_at > now() + interval '1 hour' ORDER BY expires_at DESC LIMIT 1""",
        tenant_id,
        invoice_id,
    )
