"""Webhooks' tables: subscriber endpoints, the events it keeps for resends, the invoice snapshots
it keeps for reminders, the delivery log, and the customer e-mails it queues. Each function runs
one statement on the connection (or pool) it is given, inside whatever transaction the caller
holds. The delivery worker's queue statements (claims, attempts, endpoint health) stay beside
it in delivery.py, as do the mailer's in emails/mailer.py and the purge's in housekeeping.py."""

from datetime import datetime

import asyncpg

from .emails.mailer import EMAIL_CHANNEL

DELIVERY_CHANNEL = "billstream_deliveries"  # the delivery worker listens (app/delivery.py)

# A delivery with its attempt log (`attempt_log`, JSON), oldest attempt first.
_WITH_ATTEMPTS = """
    SELECT d.*, coalesce(json_agg(json_build_object(
             'attempt', a.attempt, 'statusCode', a.status_code,
             'attemptedAt', to_char(a.attempted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
             'latencyMs', a.latency_ms, 'error', a.error, 'responseBody', a.response_body)
             ORDER BY a.attempt) FILTER (WHERE a.attempt IS NOT NULL), '[]') AS attempt_log
      FROM webhook_deliveries d LEFT JOIN webhook_attempts a USING (delivery_id)
"""


# -- endpoints --------------------------------------------------------------------------------


async def endpoint(conn, tenant_id: str, endpoint_id: str) -> asyncpg.Record | None:
    """The tenant's endpoint, unless deleted."""
    return await conn.fetchrow(
        "SELECT * FROM webhook_endpoints WHERE endpoint_id = $1 AND tenant_id = $2 AND deleted_at IS NULL",
        endpoint_id,
        tenant_id,
    )


async def insert_endpoint(
    conn,
    endpoint_id: str,
    tenant_id: str,
    url: str,
    secret: str,
    enabled_events: list[str],
    description: str | None,
    enabled: bool,
) -> asyncpg.Record:
    """`secret`: encrypted by the vault."""
    return await conn.fetchrow(
        """INSERT INTO webhook_endpoints
                  (endpoint_id, tenant_id, url, secret, enabled_events, description, enabled)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *""",
        endpoint_id,
        tenant_id,
        url,
        secret,
        enabled_events,
        description,
        enabled,
    )


async def update_endpoint(
    pool,
    tenant_id: str,
    endpoint_id: str,
    *,
    url: str | None,
    enabled_events: list[str] | None,
    set_description: bool,
    description: str | None,
    enabled: bool | None,
) -> asyncpg.Record | None:
    """None leaves a column as it is; `set_description` sets the description even to None.
    Enabling clears the failure streak and the disabled reason; disabling records 'manual'."""
    return await pool.fetchrow(
        """UPDATE webhook_endpoints SET
                  url = coalesce($3, url), enabled_events = coalesce($4, enabled_events),
                  description = CASE WHEN $5 THEN $6 ELSE description END,
                  enabled = coalesce($7, enabled),
                  -- enabling again starts afresh: no failure streak, no disabled reason
                  failing_since = CASE WHEN $7 THEN NULL ELSE failing_since END,
                  disabled_at = CASE WHEN $7 THEN NULL WHEN $7 = false THEN coalesce(disabled_at, now())
                                     ELSE disabled_at END,
                  disabled_reason = CASE WHEN $7 THEN NULL WHEN $7 = false THEN coalesce(disabled_reason, 'manual')
                                         ELSE disabled_reason END,
                  updated_at = now()
            WHERE endpoint_id = $1 AND tenant_id = $2 AND deleted_at IS NULL RETURNING *""",
        endpoint_id,
        tenant_id,
        url,
        enabled_events,
        set_description,
        description,
        enabled,
    )


async def delete_endpoint(pool, tenant_id: str, endpoint_id: str) -> bool | None:
    """True if it was there to delete (kept, disabled, as deleted: its queued deliveries then fail)."""
    return await pool.fetchval(
        """UPDATE webhook_endpoints SET deleted_at = now(), enabled = false, updated_at = now()
            WHERE endpoint_id = $1 AND tenant_id = $2 AND deleted_at IS NULL RETURNING true""",
        endpoint_id,
        tenant_id,
    )


async def rotate_secret(
    pool, tenant_id: str, endpoint_id: str, secret: str, previous_expires_at: datetime
) -> asyncpg.Record | None:
    """`secret` (encrypted) signs from now on; the one it replaces also signs until `previous_expires_at`."""
    return await pool.fetchrow(
        """UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_at = $3,
                  secret = $4, updated_at = now()
            WHERE endpoint_id = $1 AND tenant_id = $2 AND deleted_at IS NULL RETURNING *""",
        endpoint_id,
        tenant_id,
        previous_expires_at,
        secret,
    )


async def enabled_endpoints(conn, tenant_id: str) -> list[asyncpg.Record]:
    """The tenant's enabled endpoints (`endpoint_id`, `enabled_events`): who may want an event."""
    return await conn.fetch(
        """SELECT endpoint_id, enabled_events FROM webhook_endpoints
           WHERE tenant_id = $1 AND enabled AND deleted_at IS NULL""",
        tenant_id,
    )


# -- kept events and invoice snapshots --------------------------------------------------------


async def keep_event(
    conn,
    event_id: str,
    tenant_id: str,
    event_type: str,
    payload: str,
    correlation_id: str | None,
    occurred_at: datetime | None,
) -> None:
    """The event as subscribers get it (`payload`), for resends; the first copy wins."""
    await conn.execute(
        """INSERT INTO webhook_events (event_id, tenant_id, event_type, payload, correlation_id, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING""",
        event_id,
        tenant_id,
        event_type,
        payload,
        correlation_id,
        occurred_at,
    )


async def kept_event(conn, tenant_id: str, event_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM webhook_events WHERE event_id = $1 AND tenant_id = $2", event_id, tenant_id
    )


async def save_invoice_snapshot(conn, invoice_id: str, tenant_id: str, version: int, snapshot: dict) -> None:
    """`version` (the event's sequence) makes older or repeated events lose; an invoice never
    changes tenant."""
    await conn.execute(
        """INSERT INTO invoice_snapshots (invoice_id, tenant_id, version, snapshot) VALUES ($1, $2, $3, $4)
           ON CONFLICT (invoice_id) DO UPDATE SET version = EXCLUDED.version, snapshot = EXCLUDED.snapshot,
                  updated_at = now()
            WHERE invoice_snapshots.version < EXCLUDED.version AND invoice_snapshots.tenant_id = EXCLUDED.tenant_id""",
        invoice_id,
        tenant_id,
        version,
        snapshot,
    )


async def invoice_snapshot(conn, tenant_id: str, invoice_id: str | None) -> dict | None:
    """The latest snapshot seen of the tenant's invoice (a reminder carries only its id)."""
    return await conn.fetchval(
        "SELECT snapshot FROM invoice_snapshots WHERE invoice_id = $1 AND tenant_id = $2", invoice_id, tenant_id
    )


# -- deliveries -------------------------------------------------------------------------------


async def insert_deliveries(
    conn,
    tenant_id: str,
    event_id: str,
    event_type: str,
    payload: str,
    correlation_id: str | None,
    targets: list[tuple[str, str]],
) -> None:
    """One pending delivery of the event per (delivery id, endpoint id) in `targets`; an endpoint
    that already has one for the event keeps it."""
    await conn.executemany(
        """INSERT INTO webhook_deliveries (delivery_id, tenant_id, endpoint_id, event_id, event_type,
                                           payload, correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (endpoint_id, event_id) DO NOTHING""",
        [
            (delivery_id, tenant_id, endpoint_id, event_id, event_type, payload, correlation_id)
            for delivery_id, endpoint_id in targets
        ],
    )


async def queue_resend(
    conn,
    tenant_id: str,
    event_id: str,
    event_type: str,
    payload: str,
    correlation_id: str | None,
    delivery_ids: list[str],
    endpoint_ids: list[str],
) -> list[str]:
    """The kept event due now to each of `endpoint_ids` (a new delivery with the matching id of
    `delivery_ids`, or the endpoint's existing one made pending again, its retry schedule afresh);
    the delivery ids."""
    rows = await conn.fetch(
        """INSERT INTO webhook_deliveries AS d (delivery_id, tenant_id, endpoint_id, event_id, event_type,
                                               payload, correlation_id)
           SELECT ep.delivery_id, $1, ep.endpoint_id, $2, $3, $4, $5
             FROM unnest($6::text[], $7::text[]) AS ep(delivery_id, endpoint_id)
           ON CONFLICT (endpoint_id, event_id) DO UPDATE
              SET status = 'pending', next_attempt_at = now(), schedule_start = d.attempts,
                  updated_at = now()
           RETURNING d.delivery_id""",
        tenant_id,
        event_id,
        event_type,
        payload,
        correlation_id,
        delivery_ids,
        endpoint_ids,
    )
    return [r["delivery_id"] for r in rows]


async def lock_delivery(conn, tenant_id: str, delivery_id: str) -> asyncpg.Record | None:
    """The tenant's delivery, locked for this transaction."""
    return await conn.fetchrow(
        "SELECT * FROM webhook_deliveries WHERE delivery_id = $1 AND tenant_id = $2 FOR UPDATE", delivery_id, tenant_id
    )


async def retry_now(conn, delivery_id: str) -> None:
    """Due now, whatever its state; its retry schedule starts again from here."""
    await conn.execute(
        """UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),
                  schedule_start = attempts, updated_at = now() WHERE delivery_id = $1""",
        delivery_id,
    )


async def notify_deliveries(conn) -> None:
    """Wake the delivery worker (delivered when the transaction commits)."""
    await conn.execute("SELECT pg_notify($1, '')", DELIVERY_CHANNEL)


async def _with_attempts(pool, where: str, *args) -> list[asyncpg.Record]:
    return await pool.fetch(f"{_WITH_ATTEMPTS} WHERE {where} GROUP BY d.delivery_id ORDER BY d.delivery_id DESC", *args)


async def tenant_delivery(pool, tenant_id: str, delivery_id: str) -> asyncpg.Record | None:
    """The tenant's delivery with its attempt log."""
    found = await _with_attempts(pool, "d.delivery_id = $1 AND d.tenant_id = $2", delivery_id, tenant_id)
    return found[0] if found else None


async def delivery(pool, delivery_id: str) -> asyncpg.Record:
    """A delivery the caller knows exists (it just queued it), with its attempt log."""
    return (await _with_attempts(pool, "d.delivery_id = $1", delivery_id))[0]


async def deliveries(pool, delivery_ids: list[str]) -> list[asyncpg.Record]:
    """These deliveries with their attempt logs, newest first."""
    return await _with_attempts(pool, "d.delivery_id = ANY($1::text[])", delivery_ids)


# -- customer e-mails -------------------------------------------------------------------------


async def insert_email(
    conn,
    email_id: str,
    tenant_id: str,
    event_id: str,
    kind: str,
    invoice_id: str | None,
    recipient: str,
    sender: str,
    subject: str,
    text_body: str,
    html_body: str,
    attachment_url: str | None,
    attachment_name: str | None,
    correlation_id: str | None,
) -> None:
    """One e-mail of each kind per event: a redelivered event queues no second."""
    await conn.execute(
        """INSERT INTO customer_emails (email_id, tenant_id, event_id, kind, invoice_id, recipient, sender,
                                        subject, text_body, html_body, attachment_url, attachment_name,
                                        correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
           ON CONFLICT (event_id, kind) DO NOTHING""",
        email_id,
        tenant_id,
        event_id,
        kind,
        invoice_id,
        recipient,
        sender,
        subject,
        text_body,
        html_body,
        attachment_url,
        attachment_name,
        correlation_id,
    )


async def notify_emails(conn) -> None:
    """Wake the mailer (emails/mailer.py; delivered when the transaction commits)."""
    await conn.execute("SELECT pg_notify($1, '')", EMAIL_CHANNEL)


async def disable_endpoint(conn, endpoint_id: str, now: datetime, reason: str) -> asyncpg.Record | None:
    """The endpoint, disabled, if it was enabled; the conditional UPDATE takes its row lock."""
    return await conn.fetchrow(
        """UPDATE webhook_endpoints SET enabled = false, disabled_at = $2, disabled_reason = $3,
                  updated_at = $2
            WHERE endpoint_id = $1 AND enabled AND deleted_at IS NULL RETURNING *""",
        endpoint_id,
        now,
        reason,
    )
