"""Every public topic → one pending delivery per interested endpoint, written in the inbox
transaction. The delivery worker picks them up (woken by NOTIFY)."""

import asyncpg

from shared.envelope import CloudEvent
from shared.ids import new_id

from ..app.matching import payload_for, wants

PUBLIC_TOPICS = ("billing.invoices", "billing.payments", "billing.dunning")
DELIVERY_CHANNEL = "billstream_deliveries"


async def on_public_event(conn: asyncpg.Connection, event: CloudEvent) -> None:
    endpoints = await conn.fetch(
        """SELECT endpoint_id, enabled_events FROM webhook_endpoints
           WHERE tenant_id = $1 AND enabled AND deleted_at IS NULL""",
        event.tenantid,
    )
    chosen = [e["endpoint_id"] for e in endpoints if wants(e["enabled_events"], event.type)]
    if not chosen:
        return
    body = payload_for(event)
    await conn.executemany(
        """INSERT INTO webhook_deliveries (delivery_id, tenant_id, endpoint_id, event_id, event_type,
                                           payload, correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (endpoint_id, event_id) DO NOTHING""",
        [(new_id("whd"), event.tenantid, ep, event.id, event.type, body, event.correlationid)
         for ep in chosen],
    )
    await conn.execute("SELECT pg_notify($1, '')", DELIVERY_CHANNEL)
