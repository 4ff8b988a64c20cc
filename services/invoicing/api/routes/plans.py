"""Plans and their prices (NovaBilling's /api/plans). `make_router` builds the routes as
closures over one InvoicingService, which service.py passes in."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from ...app.plans import Plans
from ..listing import Column, one_of, parse_time, run_list
from ..schemas import CreatePlanIn, PlanFieldsIn, PriceChangeIn, PriceIn, currency


def _bool(v: str) -> bool:
    if v.lower() not in ("true", "false"):
        raise ValueError("is true or false")
    return v.lower() == "true"


PLAN_FILTERS = {
    "isActive": Column("is_active", _bool),
    "code": Column("code", str),
    "interval": Column("interval", one_of(("day", "week", "month", "year"), case=str.lower)),
    "createdAt": Column("created_at", parse_time),
}


def make_router(invoicing) -> APIRouter:
    service = invoicing.service
    router = APIRouter(prefix="/api/plans", tags=["plans"])
    Tenant = Annotated[str, Depends(service.tenant)]
    App = Annotated[Plans, Depends(lambda: Plans(invoicing.handlers()))]

    @router.post("", status_code=201)
    async def create_plan(body: CreatePlanIn, tenant: Tenant, plans: App) -> dict:
        """A plan with a unique code (409 plan_code_taken), one price per currency."""
        return await plans.create(tenant, body.plan_fields(), body.price_pairs())

    @router.get("")
    async def list_plans(request: Request, tenant: Tenant) -> dict:
        async with service.pool.acquire() as conn:
            return await run_list(
                conn,
                table="plan_list",
                id_col="plan_id",
                tenant=tenant,
                params=request.query_params,
                filters=PLAN_FILTERS,
                sortable={"createdAt": Column("created_at", parse_time), "name": Column("name", str)},
                default_sort="-createdAt",
                tombstones=True,
            )

    @router.get("/{plan_id}")
    async def get_plan(plan_id: str, tenant: Tenant, plans: App) -> dict:
        return await plans.get(tenant, plan_id)

    @router.patch("/{plan_id}")
    async def update_plan(plan_id: str, body: PlanFieldsIn, tenant: Tenant, plans: App) -> dict:
        """Name, description, features, interval, trial, isActive, metadata; not the code. A new
        interval or trial applies to periods and subscriptions that begin afterwards."""
        return await plans.update(tenant, plan_id, body.plan_fields())

    @router.delete("/{plan_id}", status_code=204)
    async def delete_plan(plan_id: str, tenant: Tenant, plans: App) -> Response:
        """Refused (409 plan_has_subscriptions) while a subscription runs on it: deactivate it instead."""
        await plans.delete(tenant, plan_id)
        return Response(status_code=204)

    @router.post("/{plan_id}/prices", status_code=201)
    async def add_price(plan_id: str, body: PriceIn, tenant: Tenant, plans: App) -> dict:
        """One price per currency (409 price_exists)."""
        return await plans.add_price(tenant, plan_id, currency(body.currency), body.amount)

    @router.patch("/{plan_id}/prices/{price_id}")
    async def change_price(plan_id: str, price_id: str, body: PriceChangeIn, tenant: Tenant, plans: App) -> dict:
        """A new version of the price, billed from each subscription's next period on."""
        return await plans.change_price(tenant, plan_id, price_id, body.amount)

    @router.delete("/{plan_id}/prices/{price_id}", status_code=204)
    async def remove_price(plan_id: str, price_id: str, tenant: Tenant, plans: App) -> Response:
        """No new subscription in its currency; those already on it renew at its last amount."""
        await plans.remove_price(tenant, plan_id, price_id)
        return Response(status_code=204)

    return router
