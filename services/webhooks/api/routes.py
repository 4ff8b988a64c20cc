"""Webhook endpoints: create (the secret is shown once), list, read, update, delete, rotate.
`make_router` builds the routes as closures over one webhooks instance (service.py's root)."""

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.errors import NotFound, Refused
from shared.idempotency import mark_committed
from shared.ids import new_id
from shared.pages import Keyset, PageParams, after, fetch_page, page_params
from shared.query_params import declared_only

from ..app import repository as repo
from ..app.endpoints import public_view
from ..app.matching import invalid_filter
from ..app.signing import new_secret
from ..app.urls import check_endpoint_url

ENDPOINT_ORDER = Keyset("webhook_endpoints", sort="endpoint_id", id="endpoint_id", sort_type="text")  # ULIDs: by time


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class EndpointIn(_Body):
    url: str = Field(min_length=1, max_length=2048)
    enabled_events: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool = True


class EndpointPatch(_Body):
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    enabled_events: list[str] | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None


def _check_filters(patterns: list[str]) -> list[str]:
    for i, pattern in enumerate(patterns):
        if reason := invalid_filter(pattern):
            raise Refused("event_filter_invalid", reason, field=f"enabledEvents.{i}")
    return sorted(set(patterns))


async def _get(pool, tenant: str, endpoint_id: str):
    row = await repo.endpoint(pool, tenant, endpoint_id)
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return row


def make_router(webhooks) -> APIRouter:
    """`webhooks`: the root object of service.py (its Service, settings and vault)."""
    service, vault = webhooks.service, webhooks.vault
    router = APIRouter(prefix="/api", tags=["webhook endpoints"])
    Tenant = Annotated[str, Depends(service.tenant)]

    @router.post("/webhook-endpoints", status_code=201)
    async def create_endpoint(body: EndpointIn, tenant: Tenant) -> dict:
        await check_endpoint_url(body.url, allow_private=service.settings.allow_private_urls)
        events = _check_filters(body.enabled_events)
        secret = new_secret()
        async with service.pool.acquire() as conn, conn.transaction():
            row = await repo.insert_endpoint(
                conn, new_id("we"), tenant, body.url, vault.encrypt_text(secret), events, body.description, body.enabled
            )
            await mark_committed(conn)  # a retry after a lost answer must not create a second endpoint
        return {**public_view(row), "secret": secret}  # the only time the secret is shown

    @router.get("/webhook-endpoints", dependencies=[Depends(declared_only)])
    async def list_endpoints(
        tenant: Tenant,
        paging: Annotated[PageParams, Depends(page_params)],
        starting_after: Annotated[str | None, Query(alias="startingAfter")] = None,
    ) -> dict:
        """Newest first. `startingAfter` (an endpoint id, Stripe's style) works like a cursor."""
        async with service.pool.acquire() as conn:
            rows, meta = await fetch_page(
                conn, ENDPOINT_ORDER, "tenant_id = $1 AND deleted_at IS NULL", [tenant], after(paging, starting_after)
            )
        return {"data": [public_view(r) for r in rows], "meta": meta}

    @router.get("/webhook-endpoints/{endpoint_id}")
    async def get_endpoint(endpoint_id: str, tenant: Tenant) -> dict:
        return public_view(await _get(service.pool, tenant, endpoint_id))

    @router.patch("/webhook-endpoints/{endpoint_id}")
    async def update_endpoint(endpoint_id: str, body: EndpointPatch, tenant: Tenant) -> dict:
        await _get(service.pool, tenant, endpoint_id)
        changes = body.model_dump(exclude_unset=True)
        if not changes:
            raise Refused("parameter_missing", "Send at least one of url, enabledEvents, description, enabled.")
        for name in ("url", "enabled_events", "enabled"):
            if name in changes and changes[name] is None:
                raise Refused("parameter_invalid", f"{to_camel(name)} cannot be null.", field=to_camel(name))
        if "url" in changes:
            await check_endpoint_url(changes["url"], allow_private=service.settings.allow_private_urls)
        if "enabled_events" in changes:
            changes["enabled_events"] = _check_filters(changes["enabled_events"])
        row = await repo.update_endpoint(
            service.pool,
            tenant,
            endpoint_id,
            url=changes.get("url"),
            enabled_events=changes.get("enabled_events"),
            set_description="description" in changes,
            description=changes.get("description"),
            enabled=changes.get("enabled"),
        )
        if row is None:
            raise NotFound("webhook endpoint", endpoint_id)
        return public_view(row)

    @router.delete("/webhook-endpoints/{endpoint_id}", status_code=204)
    async def delete_endpoint(endpoint_id: str, tenant: Tenant) -> Response:
        done = await repo.delete_endpoint(service.pool, tenant, endpoint_id)
        if not done:
            raise NotFound("webhook endpoint", endpoint_id)
        return Response(status_code=204)

    @router.post("/webhook-endpoints/{endpoint_id}/rotate-secret")
    async def rotate_secret(endpoint_id: str, tenant: Tenant) -> dict:
        """A new secret, shown once; the old one keeps signing alongside it for the overlap period."""
        await _get(service.pool, tenant, endpoint_id)
        secret = new_secret()
        expires = datetime.now(UTC) + timedelta(seconds=service.settings.secret_overlap_s)
        row = await repo.rotate_secret(service.pool, tenant, endpoint_id, vault.encrypt_text(secret), expires)
        if row is None:
            raise NotFound("webhook endpoint", endpoint_id)
        return {**public_view(row), "secret": secret}

    return router
