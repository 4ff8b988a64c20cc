"""Dunning's HTTP routes: an invoice's dunning status and stop-dunning, the tenant's policy,
and test clocks (test mode only)."""

from typing import Annotated

from fastapi import APIRouter, Depends

from shared import auth
from shared.errors import Forbidden

from ..app import repository as repo
from ..domain.policy import Policy
from .schemas import AdvanceTestClockIn, CreateTestClockIn


def make_routers(dunning) -> list[APIRouter]:
    service, handlers, clocks = dunning.service, dunning.handlers, dunning.test_clocks
    Tenant = Annotated[str, Depends(service.tenant)]

    async def sandbox_tenant(tenant: Tenant) -> str:
        """Test clocks change what time it is for the whole world they act in: test mode only."""
        if auth.livemode(tenant):
            raise Forbidden("test_mode_only", "Test clocks are for test mode only: use an sk_test_ key.")
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

    def policy_view(p: Policy, tenant: str) -> dict:
        return {
            "object": "dunning_policy",
            "livemode": auth.livemode(tenant),
            **p.dump(),
            "maxAttempts": p.max_attempts,
        }

    @policy.get("/policy")
    async def get_policy(tenant: Tenant) -> dict:
        return policy_view(await repo.load_policy(service.pool, tenant), tenant)

    @policy.put("/policy")
    async def put_policy(body: Policy, tenant: Tenant) -> dict:
        await repo.save_policy(service.pool, tenant, body, dunning.clock.now())
        return policy_view(body, tenant)

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
