"""Every public topic → in the inbox transaction: the event kept for resends, the invoice
snapshot kept for reminders, one pending delivery per interested endpoint, and the customer
e-mail the event sends. The delivery worker and the mailer pick them up (woken by NOTIFY)."""

from collections.abc import Awaitable, Callable

import asyncpg

from shared import auth
from shared.envelope import CloudEvent
from shared.ids import new_id
from shared.logs import get_logger

from ..app import repository as repo
from ..app.emails.compose import EMAIL_EVENTS, compose
from ..app.emails.mailer import sender_address
from ..app.matching import payload_for, wants

log = get_logger(__name__)


async def record_event(conn: asyncpg.Connection, event: CloudEvent) -> str:
    body = payload_for(event)
    await repo.keep_event(conn, event.id, event.tenantid, event.type, body, event.correlationid, event.time)
    return body


async def keep_invoice_snapshot(conn: asyncpg.Connection, event: CloudEvent) -> None:
    invoice = event.data.get("invoice")
    if not isinstance(invoice, dict) or not invoice.get("id"):
        return
    version = int(event.sequence) if event.sequence and event.sequence.isdigit() else 0
    await repo.save_invoice_snapshot(conn, invoice["id"], event.tenantid, version, invoice)


async def queue_deliveries(conn: asyncpg.Connection, event: CloudEvent, body: str) -> int:
    endpoints = await repo.enabled_endpoints(conn, event.tenantid)
    chosen = [e["endpoint_id"] for e in endpoints if wants(e["enabled_events"], event.type)]
    if not chosen:
        return 0
    await repo.insert_deliveries(
        conn, event.tenantid, event.id, event.type, body, event.correlationid, [(new_id("whd"), ep) for ep in chosen]
    )
    await repo.notify_deliveries(conn)
    return len(chosen)


async def queue_email(
    conn: asyncpg.Connection,
    event: CloudEvent,
    *,
    public_url: str,
    pay_link_secret: str,
    default_locale: str,
    from_address: str,
) -> None:
    if event.type not in EMAIL_EVENTS:
        return
    invoice = event.data.get("invoice")
    if event.type == "dunning.reminder_due":
        # The reminder carries only the invoice id: use the latest snapshot seen.
        invoice = await repo.invoice_snapshot(conn, event.tenantid, event.data.get("invoiceId"))
        if invoice is None:
            log.warning("reminder not e-mailed: invoice not seen yet", invoice_id=event.data.get("invoiceId"))
            return
    business = await auth.tenant_name(conn, event.tenantid) or "Billstream"
    try:
        draft = compose(
            event.type,
            event.data,
            invoice if isinstance(invoice, dict) else None,
            business=business,
            public_url=public_url,
            default_locale=default_locale,
            pay_link_secret=pay_link_secret,
        )
    except Exception:  # a bad snapshot must not hold up this event's webhooks
        log.exception("customer e-mail not composed", invoice_id=(invoice or {}).get("id"))
        return
    if draft is None:
        return
    await repo.insert_email(
        conn,
        new_id("eml"),
        event.tenantid,
        event.id,
        draft.kind,
        draft.invoice_id,
        draft.recipient,
        sender_address(business, from_address),
        draft.subject,
        draft.text,
        draft.html,
        draft.attachment_url,
        draft.attachment_name,
        event.correlationid,
    )
    await repo.notify_emails(conn)
    log.info("customer e-mail queued", kind=draft.kind, invoice_id=draft.invoice_id)


def public_event_handler(
    *, emails: bool, public_url: str, pay_link_secret: str, default_locale: str, from_address: str
) -> Callable[[asyncpg.Connection, CloudEvent], Awaitable[None]]:
    async def on_public_event(conn: asyncpg.Connection, event: CloudEvent) -> None:
        body = await record_event(conn, event)
        await keep_invoice_snapshot(conn, event)
        await queue_deliveries(conn, event, body)
        if emails:
            await queue_email(
                conn,
                event,
                public_url=public_url,
                pay_link_secret=pay_link_secret,
                default_locale=default_locale,
                from_address=from_address,
            )

    return on_public_event
