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
from shared.pages import Keyset, PageParams, after, fetch_page, page_params
from shared.query_params import declared_only

from ..app import repository as repo
from ..app.endpoints import iso
from ..app.matching import wants

DELIVERY_ORDER = Keyset("webhook_deliveries", sort="delivery_id", id="delivery_id", sort_type="text")  # ULIDs: by time


def _delivery(r: asyncpg.Record) -> dict:
    pending = r["status"] == "pending"
    return {
        "id": r["delivery_id"],
        "object": "webhook_delivery",
        "livemode": auth.livemode(r["tenant_id"]),
        "endpointId": r["endpoint_id"],
        "eventId": r["event_id"],
        "eventType": r["event_type"],
        "status": r["status"],
        "attemptCount": r["attempts"],
        "lastStatusCode": r["last_status"],
        "lastError": r["last_error"],
        "nextAttemptAt": iso(r["next_attempt_at"]) if pending else None,
        "createdAt": iso(r["created_at"]),
        "updatedAt": iso(r["updated_at"]),
        "attempts": r["attempt_log"],
    }


async def _endpoint(conn, tenant: str, endpoint_id: str) -> asyncpg.Record:
    row = await repo.endpoint(conn, tenant, endpoint_id)
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return row


def _must_be_enabled(endpoint: asyncpg.Record) -> None:
    if not endpoint["enabled"]:
        raise Conflict(
            "endpoint_disabled",
            f"Webhook endpoint {endpoint['endpoint_id']} is disabled; enable it (PATCH enabled=true) before retrying.",
            field="endpointId",
        )


class ResendIn(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    endpoint_id: str | None = None


def make_router(webhooks) -> APIRouter:
    """`webhooks`: the root object of service.py (its Service, settings and vault)."""
    service = webhooks.service
    router = APIRouter(prefix="/api", tags=["webhook deliveries"])
    Tenant = Annotated[str, Depends(service.tenant)]

    @router.get("/webhook-endpoints/{endpoint_id}/deliveries", dependencies=[Depends(declared_only)])
    async def list_deliveries(
        endpoint_id: str,
        tenant: Tenant,
        paging: Annotated[PageParams, Depends(page_params)],
        status: Annotated[Literal["pending", "succeeded", "failed"] | None, Query()] = None,
        event_type: Annotated[str | None, Query(alias="eventType")] = None,
        starting_after: Annotated[str | None, Query(alias="startingAfter")] = None,
    ) -> dict:
        """Newest first, with their attempt logs. `startingAfter` (a delivery id) works like a cursor."""
        await _endpoint(service.pool, tenant, endpoint_id)
        where, args = "endpoint_id = $1 AND tenant_id = $2", [endpoint_id, tenant]
        for column, value in (("status", status), ("event_type", event_type)):
            if value is not None:
                args.append(value)
                where += f" AND {column} = ${len(args)}"
        async with service.pool.acquire() as conn:
            page, meta = await fetch_page(conn, DELIVERY_ORDER, where, args, after(paging, starting_after))
        rows = await repo.deliveries(service.pool, [r["delivery_id"] for r in page])
        return {"data": [_delivery(r) for r in rows], "meta": meta}

    @router.get("/webhook-deliveries/{delivery_id}")
    async def get_delivery(delivery_id: str, tenant: Tenant) -> dict:
        found = await repo.tenant_delivery(service.pool, tenant, delivery_id)
        if found is None:
            raise NotFound("webhook delivery", delivery_id)
        return _delivery(found)

    @router.post("/webhook-deliveries/{delivery_id}/retry", status_code=202)
    async def retry_delivery(delivery_id: str, tenant: Tenant) -> dict:
        """Attempt again now, whatever its state (to an endpoint backing off as a whole: at the endpoint's
        retry time); a failure starts the retry schedule again."""
        async with service.pool.acquire() as conn, conn.transaction():
            row = await repo.lock_delivery(conn, tenant, delivery_id)
            if row is None:
                raise NotFound("webhook delivery", delivery_id)
            _must_be_enabled(await _endpoint(conn, tenant, row["endpoint_id"]))
            await repo.retry_now(conn, delivery_id)
            await repo.notify_deliveries(conn)
        return _delivery(await repo.delivery(service.pool, delivery_id))

    @router.post("/events/{event_id}/resend", status_code=202)
    async def resend_event(event_id: str, tenant: Tenant, body: ResendIn | None = None) -> dict:
        """Send an event again: to one endpoint, or to every enabled endpoint that wants it now."""
        endpoint_id = body.endpoint_id if body else None
        async with service.pool.acquire() as conn, conn.transaction():
            event = await repo.kept_event(conn, tenant, event_id)
            if event is None:
                raise NotFound("event", event_id)
            if endpoint_id:
                endpoint = await _endpoint(conn, tenant, endpoint_id)
                _must_be_enabled(endpoint)
                targets = [endpoint_id]
            else:
                endpoints = await repo.enabled_endpoints(conn, tenant)
                targets = [e["endpoint_id"] for e in endpoints if wants(e["enabled_events"], event["event_type"])]
                if not targets:
                    raise Conflict(
                        "no_endpoint_wants_event", f"No enabled webhook endpoint subscribes to {event['event_type']}."
                    )
            ids = await repo.queue_resend(
                conn,
                tenant,
                event_id,
                event["event_type"],
                event["payload"],
                event["correlation_id"],
                [new_id("whd") for _ in targets],
                targets,
            )
            await repo.notify_deliveries(conn)
        return {"data": [_delivery(r) for r in await repo.deliveries(service.pool, ids)]}

    return router
