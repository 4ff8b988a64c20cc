"""Webhook endpoints and their delivery log."""

import base64
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.errors import NotFound
from shared.ids import new_id

from ..app.urls import check_endpoint_url
from ..service import service

router = APIRouter(prefix="/api", tags=["webhooks"])
Tenant = Annotated[str, Depends(service.tenant)]


class EndpointIn(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    enabled_events: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    description: str | None = Field(default=None, max_length=500)


def _endpoint(row, *, secret: str | None = None) -> dict:
    view = {
        "id": row["endpoint_id"], "object": "webhook_endpoint", "url": row["url"],
        "enabledEvents": row["enabled_events"], "description": row["description"],
        "enabled": row["enabled"], "createdAt": row["created_at"].isoformat(),
    }
    if secret:
        view["secret"] = secret  # shown once, at creation
    return view


@router.post("/webhook-endpoints", status_code=201)
async def create_endpoint(body: EndpointIn, tenant: Tenant) -> dict:
    await check_endpoint_url(body.url, allow_private=service.settings.allow_private_urls)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    row = await service.pool.fetchrow(
        """INSERT INTO webhook_endpoints (endpoint_id, tenant_id, url, secret, enabled_events, description)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
        new_id("we"), tenant, body.url, secret, body.enabled_events, body.description,
    )
    return _endpoint(row, secret=secret)


@router.get("/webhook-endpoints")
async def list_endpoints(tenant: Tenant) -> dict:
    rows = await service.pool.fetch(
        """SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL
           ORDER BY created_at DESC""", tenant)
    return {"data": [_endpoint(r) for r in rows]}


async def _get(tenant: str, endpoint_id: str):
    row = await service.pool.fetchrow(
        "SELECT * FROM webhook_endpoints WHERE endpoint_id = $1 AND tenant_id = $2 AND deleted_at IS NULL",
        endpoint_id, tenant)
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return row


@router.get("/webhook-endpoints/{endpoint_id}")
async def get_endpoint(endpoint_id: str, tenant: Tenant) -> dict:
    return _endpoint(await _get(tenant, endpoint_id))


@router.delete("/webhook-endpoints/{endpoint_id}", status_code=204)
async def delete_endpoint(endpoint_id: str, tenant: Tenant) -> Response:
    await _get(tenant, endpoint_id)
    await service.pool.execute(
        "UPDATE webhook_endpoints SET deleted_at = now(), enabled = false WHERE endpoint_id = $1", endpoint_id)
    return Response(status_code=204)


@router.get("/webhook-endpoints/{endpoint_id}/deliveries")
async def list_deliveries(
    endpoint_id: str, tenant: Tenant, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict:
    await _get(tenant, endpoint_id)
    rows = await service.pool.fetch(
        """SELECT d.*, coalesce(json_agg(json_build_object(
                 'attempt', a.attempt, 'attemptedAt', a.attempted_at, 'statusCode', a.status_code,
                 'latencyMs', a.latency_ms, 'error', a.error) ORDER BY a.attempt)
                 FILTER (WHERE a.attempt IS NOT NULL), '[]') AS attempt_log
             FROM webhook_deliveries d LEFT JOIN webhook_attempts a USING (delivery_id)
            WHERE d.endpoint_id = $1 GROUP BY d.delivery_id ORDER BY d.created_at DESC LIMIT $2""",
        endpoint_id, limit)
    return {"data": [
        {"id": r["delivery_id"], "eventId": r["event_id"], "eventType": r["event_type"],
         "status": r["status"], "attempts": r["attempt_log"],
         "nextAttemptAt": r["next_attempt_at"].isoformat() if r["status"] == "pending" else None}
        for r in rows]}
