"""Subscriptions (NovaBilling's /api/subscriptions) and a customer's subscriptions.
`make_router` builds the routes as closures over one InvoicingService (service.py)."""

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import QueryParams

from ...app.subscriptions import Subscriptions
from ...domain.subscription import STATUSES
from ..listing import Column, one_of, parse_time, run_list
from ..schemas import CancelSubscriptionIn, ChangePlanIn, CreateSubscriptionIn, currency

FILTERS = {
    "status": Column("status", one_of(STATUSES, {"CANCELLED": "CANCELED"})),
    "customerId": Column("customer_id", str),
    "planId": Column("plan_id", str),
    "currency": Column("currency", str.upper),
    "currentPeriodEnd": Column("current_period_end", parse_time),
    "createdAt": Column("created_at", parse_time),
}


async def subscription_page(pool, tenant: str, params: QueryParams) -> dict:
    async with pool.acquire() as conn:
        return await run_list(
            conn,
            table="subscription_list",
            id_col="subscription_id",
            tenant=tenant,
            params=params,
            filters=FILTERS,
            sortable={"createdAt": Column("created_at", parse_time)},
            default_sort="-createdAt",
            search_col=None,
        )


def make_router(invoicing) -> APIRouter:
    service = invoicing.service
    router = APIRouter(prefix="/api", tags=["subscriptions"])
    Tenant = Annotated[str, Depends(service.tenant)]
    App = Annotated[Subscriptions, Depends(lambda: Subscriptions(invoicing.handlers()))]

    @router.post("/subscriptions", status_code=201)
    async def create_subscription(body: CreateSubscriptionIn, tenant: Tenant, subs: App) -> dict:
        """TRIALING with trial days (the plan's unless given), else ACTIVE with the first
        period's invoice issued at once (collected when the customer pays automatically)."""
        start = body.start_date
        if start is not None:  # a date, or a time without a zone, is UTC
            start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        return await subs.create(
            tenant,
            customer_id=body.customer_id,
            plan_id=body.plan_id,
            currency=currency(body.currency),
            quantity=body.quantity,
            start=start,
            trial_days=body.trial_days,
            metadata=body.metadata,
        )

    @router.get("/subscriptions")
    async def list_subscriptions(request: Request, tenant: Tenant) -> dict:
        return await subscription_page(service.pool, tenant, request.query_params)

    @router.get("/subscriptions/{subscription_id}")
    async def get_subscription(subscription_id: str, tenant: Tenant, subs: App) -> dict:
        return await subs.get(tenant, subscription_id)

    @router.post("/subscriptions/{subscription_id}/cancel")
    async def cancel_subscription(
        subscription_id: str, tenant: Tenant, subs: App, body: CancelSubscriptionIn | None = None
    ) -> dict:
        """cancelAt now (CANCELED at once) or period_end (ACTIVE until the period ends, then ENDED)."""
        body = body or CancelSubscriptionIn()
        return await subs.cancel(
            tenant, subscription_id, at_period_end=body.cancel_at == "period_end", reason=body.reason
        )

    @router.post("/subscriptions/{subscription_id}/pause")
    async def pause_subscription(subscription_id: str, tenant: Tenant, subs: App) -> dict:
        """No periods are billed while paused."""
        return await subs.pause(tenant, subscription_id)

    @router.post("/subscriptions/{subscription_id}/resume")
    async def resume_subscription(subscription_id: str, tenant: Tenant, subs: App) -> dict:
        """A new period begins now, billed at once."""
        return await subs.resume(tenant, subscription_id)

    @router.post("/subscriptions/{subscription_id}/change-plan")
    async def change_plan(subscription_id: str, body: ChangePlanIn, tenant: Tenant, subs: App) -> dict:
        """at now: the rest of the period on the new plan (prorated: the unused part of the old
        price becomes credit and the rest on the new one is billed at once); at period_end: the
        next period begins on it."""
        return await subs.change_plan(
            tenant, subscription_id, body.new_plan_id, at_period_end=body.at == "period_end", prorate=body.prorate
        )

    @router.get("/customers/{customer_id}/subscriptions")
    async def customer_subscriptions(customer_id: str, request: Request, tenant: Tenant, subs: App) -> dict:
        await subs.app.get_customer(tenant, customer_id)  # 404 otherwise
        params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("customerId", "customer_id")]
        return await subscription_page(service.pool, tenant, QueryParams([*params, ("customerId", customer_id)]))

    return router
