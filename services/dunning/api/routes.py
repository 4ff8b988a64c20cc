"""Dunning's HTTP routes: an invoice's dunning status and stop-dunning, the tenant's policy,
and test clocks for sandbox tenants."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from shared import auth
from shared.errors import ApiError

from ..app import repository as repo
from ..domain.policy import Policy
from .schemas import AdvanceTestClockIn, CreateTestClockIn


def make_routers(dunning) -> list[APIRouter]:
    service, handlers, clocks = dunning.service, dunning.handlers, dunning.test_clocks
    Tenant = Annotated[str, Depends(service.tenant)]

    async def sandbox_tenant(request: Request, tenant: Tenant) -> str:
        """Test clocks change what time it is for the whole tenant: sandbox tenants only."""
        mode = await service.pool.fetchval(
            "SELECT mode FROM api_keys WHERE key_hash = $1", auth.hash_key(auth.key_from_request(request))
        )
        live_keys = await service.pool.fetchval(
            "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND mode = 'live' AND revoked_at IS NULL", tenant
        )
        if mode != "test" or live_keys:
            raise ApiError("test_mode_only",
                           "Test clocks are only for sandbox tenants: use an sk_test_ key of a tenant without live keys.",
                           status=403)
        return tenant

    Sandbox = Annotated[str, Depends(sandbox_tenant)]

    invoices = APIRouter(prefix="/api/invoices", tags=["dunning"])

    @invoices.get("/{invoice_id}/dunning")
    async def get_dunning(invoice_id: str, tenant: Tenant) -> dict:
        return await handlers.view(service.pool, tenant, invoice_id)

    @invoices.post("/{invoice_id}/stop-dunning")
    async def stop_dunning(invoice_id: str, tenant: Tenant) -> dict:
        return await handlers.stop(service.pool, tenant, invoice_id)

    policy = APIRouter(prefix="/api/dunning", tags=["dunning"])

    def policy_view(p: Policy) -> dict:
        return {"object": "dunning_policy", **p.dump(), "maxAttempts": p.max_attempts}

    @policy.get("/policy")
    async def get_policy(tenant: Tenant) -> dict:
        return policy_view(await repo.load_policy(service.pool, tenant))

    @policy.put("/policy")
    async def put_policy(body: Policy, tenant: Tenant) -> dict:
        await repo.save_policy(service.pool, tenant, body, dunning.clock.now())
        return policy_view(body)

    test_clocks = APIRouter(prefix="/api/test-clocks", tags=["test clocks"])

    @test_clocks.post("", status_code=201)
    async def create_clock(body: CreateTestClockIn, tenant: Sandbox) -> dict:
        return await clocks.create(tenant, name=body.name, frozen_time=body.frozen_time)

    @test_clocks.get("")
    async def list_clocks(tenant: Sandbox) -> dict:
        return await clocks.list(tenant)

    @test_clocks.get("/{clock_id}")
    async def get_clock(clock_id: str, tenant: Sandbox) -> dict:
        return await clocks.get(tenant, clock_id)

    @test_clocks.post("/{clock_id}/advance")
    async def advance_clock(clock_id: str, body: AdvanceTestClockIn, tenant: Sandbox) -> dict:
        return await clocks.advance(tenant, clock_id, body.target)

    @test_clocks.delete("/{clock_id}")
    async def delete_clock(clock_id: str, tenant: Sandbox) -> dict:
        return await clocks.delete(tenant, clock_id)

    return [invoices, policy, test_clocks]
