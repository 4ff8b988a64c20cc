"""The tenant a key belongs to, over HTTP: its profile, its usage this month, and its API keys
(create, shown once; list; revoke), so keys rotate without a shell. A key manages only keys of
its own mode: a test key can neither see nor make a live key. `make_router` builds the routes
as closures over one InvoicingService (service.py)."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import Field

from shared import auth
from shared.errors import Conflict, NotFound, Refused
from shared.pages import meta

from ...app.tenants import Key, TenantHandlers
from ..schemas import Body


class TenantPatch(Body):
    name: str = Field(min_length=1, max_length=200)


class ApiKeyIn(Body):
    description: str | None = Field(default=None, max_length=200)  # accepted for clients that send one


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def _key_view(k: Key) -> dict:
    return {
        "id": k.key_id,
        "object": "api_key",
        "livemode": k.mode == "live",
        "mode": k.mode,
        "prefix": k.prefix,  # the first characters, to tell keys apart; the key itself is never shown again
        "active": k.revoked_at is None,
        "createdAt": _iso(k.created_at),
        "revokedAt": _iso(k.revoked_at),
    }


def make_router(invoicing) -> APIRouter:
    service = invoicing.service
    router = APIRouter(prefix="/api/tenants/me", tags=["tenants"])
    World = Annotated[str, Depends(service.tenant)]  # the tenant's world: its id and the key's mode

    def handlers() -> TenantHandlers:
        return TenantHandlers(service.pool, service.aggregates)

    def mode_of(world: str) -> str:
        return "live" if auth.livemode(world) else "test"

    async def profile(world: str) -> dict:
        state, _ = await handlers().state(auth.tenant_of(world))
        return {
            "id": auth.tenant_of(world),
            "object": "tenant",
            "livemode": auth.livemode(world),
            "name": state.name,
            "createdAt": _iso(state.created_at),
        }

    @router.get("")
    async def get_tenant(world: World) -> dict:
        return await profile(world)

    @router.patch("")
    async def update_tenant(body: TenantPatch, world: World) -> dict:
        """The name shown on invoices, e-mails and the hosted page (both modes)."""
        try:
            await handlers().rename(auth.tenant_of(world), body.name)
        except ValueError as exc:
            raise Refused("parameter_invalid", str(exc), field="name") from exc
        return await profile(world)

    @router.get("/usage")
    async def usage(world: World) -> dict:
        """This calendar month (UTC) in the key's mode: invoices created and what they came to."""
        now = datetime.now(UTC)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        async with service.pool.acquire() as conn:
            counts = await conn.fetchrow(
                """SELECT count(*) AS invoices, count(*) FILTER (WHERE created_at >= $2) AS created,
                          (SELECT count(*) FROM customer_list WHERE tenant_id = $1 AND NOT deleted) AS customers
                     FROM invoice_list WHERE tenant_id = $1 AND NOT deleted""",
                world,
                start,
            )
            amounts = await conn.fetch(
                """SELECT currency, sum(total) AS invoiced, sum(amount_paid) AS paid FROM invoice_list
                    WHERE tenant_id = $1 AND NOT deleted AND created_at >= $2
                      AND status NOT IN ('DRAFT', 'VOID') GROUP BY currency ORDER BY currency""",
                world,
                start,
            )
        state, _ = await handlers().state(auth.tenant_of(world))
        return {
            "object": "tenant_usage",
            "livemode": auth.livemode(world),
            "period": {"start": _iso(start), "end": _iso(end)},
            "invoices": {"total": counts["invoices"], "createdThisPeriod": counts["created"]},
            "customers": {"total": counts["customers"]},
            "apiKeys": {"active": sum(k.mode == mode_of(world) and not k.revoked_at for k in state.keys.values())},
            # The invoices created this month that were issued (not drafts or voids), by currency.
            "amounts": [
                {"currency": r["currency"], "invoiced": int(r["invoiced"]), "paid": int(r["paid"])} for r in amounts
            ],
        }

    @router.get("/api-keys")
    async def list_keys(world: World) -> dict:
        """The keys of the caller's mode, newest first, revoked ones too."""
        state, _ = await handlers().state(auth.tenant_of(world))
        keys = [_key_view(k) for k in reversed(state.keys.values()) if k.mode == mode_of(world)]
        page = meta(limit=max(len(keys), 1), has_more=False, next_cursor=None, page=1, total=len(keys))
        return {"data": keys, "meta": page}

    @router.post("/api-keys", status_code=201)
    async def create_key(world: World, body: ApiKeyIn | None = None) -> dict:
        """A new key of the caller's mode; `secret` is shown in this answer only."""
        tenant = auth.tenant_of(world)
        key_id, secret = await handlers().create_key(tenant, mode_of(world))
        state, _ = await handlers().state(tenant)
        return {**_key_view(state.keys[key_id]), "secret": secret}

    @router.delete("/api-keys/{key_id}")
    async def revoke_key(key_id: str, world: World) -> dict:
        """Revoked at once here, within moments in every service. The mode's last active key
        cannot be revoked (409 last_api_key): make its successor first."""
        tenant = auth.tenant_of(world)
        try:
            await handlers().revoke_key(tenant, key_id, mode=mode_of(world))
        except LookupError:
            raise NotFound("API key", key_id) from None
        except ValueError as exc:
            raise Conflict("last_api_key", str(exc)) from exc
        state, _ = await handlers().state(tenant)
        return _key_view(state.keys[key_id])

    return router
