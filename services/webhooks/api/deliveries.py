"""The delivery log (every attempt: status code, latency, error), retrying a delivery, and
resending an event. `make_router` builds the routes as closures over one webhooks instance
(service.py's root)."""

from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from shared import auth
from shared.errors import Conflict, NotFound
from shared.ids import new_id

from ..app.endpoints import iso
from ..app.matching import wants
from ..consumers.events import DELIVERY_CHANNEL

_WITH_ATTEMPTS = """
    SELECT d.*, coalesce(json_agg(json_build_object(
             'attempt', a.attempt, 'statusCode', a.status_code,
             'attemptedAt', to_char(a.attempted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
             'latencyMs', a.latency_ms, 'error', a.error, 'responseBody', a.response_body)
             ORDER BY a.attempt) FILTER (WHERE a.attempt IS NOT NULL), '[]') AS attempt_log
      FROM webhook_deliveries d LEFT JOIN webhook_attempts a USING (delivery_id)
"""


def _delivery(r: asyncpg.Record) -> dict:
    pending = r["status"] == "pending"
    return {
        "id": r["delivery_id"], "object": "webhook_delivery", "livemode": auth.livemode(r["tenant_id"]),
        "endpointId": r["endpoint_id"],
        "eventId": r["event_id"], "eventType": r["event_type"], "status": r["status"],
        "attemptCount": r["attempts"], "lastStatusCode": r["last_status"], "lastError": r["last_error"],
        "nextAttemptAt": iso(r["next_attempt_at"]) if pending else None,
        "createdAt": iso(r["created_at"]), "updatedAt": iso(r["updated_at"]),
        "attempts": r["attempt_log"],
    }


async def _deliveries(pool, where: str, *args) -> list[dict]:
    rows = await pool.fetch(
        f"{_WITH_ATTEMPTS} WHERE {where} GROUP BY d.delivery_id ORDER BY d.delivery_id DESC", *args)
    return [_delivery(r) for r in rows]


async def _endpoint(conn, tenant: str, endpoint_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM webhook_endpoints WHERE endpoint_id = $1 AND tenant_id = $2 AND deleted_at IS NULL",
        endpoint_id, tenant)
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return row


def _must_be_enabled(endpoint: asyncpg.Record) -> None:
    if not endpoint["enabled"]:
        raise Conflict("endpoint_disabled",
                       f"Webhook endpoint {endpoint['endpoint_id']} is disabled; enable it "
                       "(PATCH enabled=true) before retrying.", field="endpointId")


class ResendIn(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    endpoint_id: str | None = None


def make_router(webhooks) -> APIRouter:
    """`webhooks`: the root object of service.py (its Service, settings and vault)."""
    service = webhooks.service
    router = APIRouter(prefix="/api", tags=["webhook deliveries"])
    Tenant = Annotated[str, Depends(service.tenant)]

    @router.get("/webhook-endpoints/{endpoint_id}/deliveries")
    async def list_deliveries(
        endpoint_id: str, tenant: Tenant,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        status: Annotated[Literal["pending", "succeeded", "failed"] | None, Query()] = None,
        event_type: Annotated[str | None, Query(alias="eventType")] = None,
        starting_after: Annotated[str | None, Query(alias="startingAfter")] = None,
    ) -> dict:
        await _endpoint(service.pool, tenant, endpoint_id)
        rows = await service.pool.fetch(
            f"""{_WITH_ATTEMPTS}
                WHERE d.delivery_id IN (
                    SELECT delivery_id FROM webhook_deliveries
                     WHERE endpoint_id = $1 AND tenant_id = $2 AND ($3::text IS NULL OR status = $3)
                       AND ($4::text IS NULL OR event_type = $4) AND ($5::text IS NULL OR delivery_id < $5)
                     ORDER BY delivery_id DESC LIMIT $6)
                GROUP BY d.delivery_id ORDER BY d.delivery_id DESC""",
            endpoint_id, tenant, status, event_type, starting_after, limit + 1)
        return {"data": [_delivery(r) for r in rows[:limit]], "hasMore": len(rows) > limit}

    @router.get("/webhook-deliveries/{delivery_id}")
    async def get_delivery(delivery_id: str, tenant: Tenant) -> dict:
        found = await _deliveries(service.pool, "d.delivery_id = $1 AND d.tenant_id = $2", delivery_id, tenant)
        if not found:
            raise NotFound("webhook delivery", delivery_id)
        return found[0]

    @router.post("/webhook-deliveries/{delivery_id}/retry", status_code=202)
    async def retry_delivery(delivery_id: str, tenant: Tenant) -> dict:
        """Attempt again now, whatever its state (to an endpoint backing off as a whole: at the endpoint's
        retry time); a failure starts the retry schedule again."""
        async with service.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM webhook_deliveries WHERE delivery_id = $1 AND tenant_id = $2 FOR UPDATE",
                delivery_id, tenant)
            if row is None:
                raise NotFound("webhook delivery", delivery_id)
            _must_be_enabled(await _endpoint(conn, tenant, row["endpoint_id"]))
            await conn.execute(
                """UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),
                          schedule_start = attempts, updated_at = now() WHERE delivery_id = $1""", delivery_id)
            await conn.execute("SELECT pg_notify($1, '')", DELIVERY_CHANNEL)
        return (await _deliveries(service.pool, "d.delivery_id = $1", delivery_id))[0]

    @router.post("/events/{event_id}/resend", status_code=202)
    async def resend_event(event_id: str, tenant: Tenant, body: ResendIn | None = None) -> dict:
        """Send an event again: to one endpoint, or to every enabled endpoint that wants it now."""
        endpoint_id = body.endpoint_id if body else None
        async with service.pool.acquire() as conn, conn.transaction():
            event = await conn.fetchrow(
                "SELECT * FROM webhook_events WHERE event_id = $1 AND tenant_id = $2", event_id, tenant)
            if event is None:
                raise NotFound("event", event_id)
            if endpoint_id:
                endpoint = await _endpoint(conn, tenant, endpoint_id)
                _must_be_enabled(endpoint)
                targets = [endpoint_id]
            else:
                endpoints = await conn.fetch(
                    """SELECT endpoint_id, enabled_events FROM webhook_endpoints
                        WHERE tenant_id = $1 AND enabled AND deleted_at IS NULL""", tenant)
                targets = [e["endpoint_id"] for e in endpoints if wants(e["enabled_events"], event["event_type"])]
                if not targets:
                    raise Conflict("no_endpoint_wants_event",
                                   f"No enabled webhook endpoint subscribes to {event['event_type']}.")
            ids = await conn.fetch(
                """INSERT INTO webhook_deliveries AS d (delivery_id, tenant_id, endpoint_id, event_id, event_type,
                                                       payload, correlation_id)
                   SELECT ep.delivery_id, $1, ep.endpoint_id, $2, $3, $4, $5
                     FROM unnest($6::text[], $7::text[]) AS ep(delivery_id, endpoint_id)
                   ON CONFLICT (endpoint_id, event_id) DO UPDATE
                      SET status = 'pending', next_attempt_at = now(), schedule_start = d.attempts,
                          updated_at = now()
                   RETURNING d.delivery_id""",
                tenant, event_id, event["event_type"], event["payload"], event["correlation_id"],
                [new_id("whd") for _ in targets], targets)
            await conn.execute("SELECT pg_notify($1, '')", DELIVERY_CHANNEL)
        return {"data": await _deliveries(service.pool, "d.delivery_id = ANY($1::text[])",
                                          [r["delivery_id"] for r in ids])}

    return router
