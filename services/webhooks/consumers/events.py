"""Every public topic → in the inbox transaction: the event kept for resends, the invoice
snapshot kept for reminders, one pending delivery per interested endpoint, and the customer
e-mail the event sends. The delivery worker and the mailer pick them up (woken by NOTIFY)."""

from collections.abc import Awaitable, Callable

import asyncpg

from shared import auth
from shared.envelope import CloudEvent
from shared.ids import new_id
from shared.logs import get_logger

from ..app.emails.compose import EMAIL_EVENTS, compose
from ..app.emails.mailer import EMAIL_CHANNEL, sender_address
from ..app.matching import payload_for, wants

log = get_logger(__name__)
DELIVERY_CHANNEL = "billstream_deliveries"


async def record_event(conn: asyncpg.Connection, event: CloudEvent) -> str:
    body = payload_for(event)
    await conn.execute(
        """INSERT INTO webhook_events (event_id, tenant_id, event_type, payload, correlation_id, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING""",
        event.id, event.tenantid, event.type, body, event.correlationid, event.time,
    )
    return body


async def keep_invoice_snapshot(conn: asyncpg.Connection, event: CloudEvent) -> None:
    invoice = event.data.get("invoice")
    if not isinstance(invoice, dict) or not invoice.get("id"):
        return
    version = int(event.sequence) if event.sequence and event.sequence.isdigit() else 0
    await conn.execute(
        """INSERT INTO invoice_snapshots (invoice_id, tenant_id, version, snapshot) VALUES ($1, $2, $3, $4)
           ON CONFLICT (invoice_id) DO UPDATE SET version = EXCLUDED.version, snapshot = EXCLUDED.snapshot,
                  updated_at = now()
            WHERE invoice_snapshots.version < EXCLUDED.version AND invoice_snapshots.tenant_id = EXCLUDED.tenant_id""",
        invoice["id"], event.tenantid, version, invoice,
    )


async def queue_deliveries(conn: asyncpg.Connection, event: CloudEvent, body: str) -> int:
    endpoints = await conn.fetch(
        """SELECT endpoint_id, enabled_events FROM webhook_endpoints
           WHERE tenant_id = $1 AND enabled AND deleted_at IS NULL""",
        event.tenantid,
    )
    chosen = [e["endpoint_id"] for e in endpoints if wants(e["enabled_events"], event.type)]
    if not chosen:
        return 0
    await conn.executemany(
        """INSERT INTO webhook_deliveries (delivery_id, tenant_id, endpoint_id, event_id, event_type,
                                           payload, correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (endpoint_id, event_id) DO NOTHING""",
        [(new_id("whd"), event.tenantid, ep, event.id, event.type, body, event.correlationid)
         for ep in chosen],
    )
    await conn.execute("SELECT pg_notify($1, '')", DELIVERY_CHANNEL)
    return len(chosen)


async def queue_email(conn: asyncpg.Connection, event: CloudEvent, *, public_url: str, pay_link_secret: str,
                      default_locale: str, from_address: str) -> None:
    if event.type not in EMAIL_EVENTS:
        return
    invoice = event.data.get("invoice")
    if event.type == "dunning.reminder_due":
        # The reminder carries only the invoice id: use the latest snapshot seen.
        invoice = await conn.fetchval(
            "SELECT snapshot FROM invoice_snapshots WHERE invoice_id = $1 AND tenant_id = $2",
            event.data.get("invoiceId"), event.tenantid)
        if invoice is None:
            log.warning("reminder not e-mailed: invoice not seen yet", invoice_id=event.data.get("invoiceId"))
            return
    business = await auth.tenant_name(conn, event.tenantid) or "Billstream"
    try:
        draft = compose(event.type, event.data, invoice if isinstance(invoice, dict) else None,
                        business=business, public_url=public_url, default_locale=default_locale,
                        pay_link_secret=pay_link_secret)
    except Exception:  # a bad snapshot must not hold up this event's webhooks
        log.exception("customer e-mail not composed", invoice_id=(invoice or {}).get("id"))
        return
    if draft is None:
        return
    await conn.execute(
        """INSERT INTO customer_emails (email_id, tenant_id, event_id, kind, invoice_id, recipient, sender,
                                        subject, text_body, html_body, attachment_url, attachment_name,
                                        correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
           ON CONFLICT (event_id, kind) DO NOTHING""",
        new_id("eml"), event.tenantid, event.id, draft.kind, draft.invoice_id, draft.recipient,
        sender_address(business, from_address), draft.subject, draft.text, draft.html,
        draft.attachment_url, draft.attachment_name, event.correlationid,
    )
    await conn.execute("SELECT pg_notify($1, '')", EMAIL_CHANNEL)
    log.info("customer e-mail queued", kind=draft.kind, invoice_id=draft.invoice_id)


def public_event_handler(*, emails: bool, public_url: str, pay_link_secret: str, default_locale: str,
                         from_address: str) -> Callable[[asyncpg.Connection, CloudEvent], Awaitable[None]]:
    async def on_public_event(conn: asyncpg.Connection, event: CloudEvent) -> None:
        body = await record_event(conn, event)
        await keep_invoice_snapshot(conn, event)
        await queue_deliveries(conn, event, body)
        if emails:
            await queue_email(conn, event, public_url=public_url, pay_link_secret=pay_link_secret,
                              default_locale=default_locale, from_address=from_address)

    return on_public_event
