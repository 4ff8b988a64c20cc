"""Plans: their commands and reads, on invoicing's streams (a plan is its own stream, published
on billing.subscriptions). Each command is one transaction through Invoicing.transact and
Invoicing.record, as for invoices."""

from shared.errors import NotFound
from shared.ids import new_id

from ..domain import events as ev
from ..domain import plan as pl
from . import repository as repo
from .invoices import Invoicing
from .views import plan_view, price_view


class Plans:
    def __init__(self, app: Invoicing) -> None:
        self.app = app

    async def load(self, conn, tenant: str, plan_id: str) -> pl.Plan:
        stream = await self.app.aggregates.load(conn, plan_id)
        state = pl.fold(stream.history, plan_id) if stream.is_a("plan", tenant) else None
        if state is None or not state.exists:
            raise NotFound("plan", plan_id)
        return state

    async def _record(self, conn, tenant: str, state: pl.Plan, facts: list[pl.Fact]) -> pl.Plan:
        at = self.app.clock()
        return await self.app.record(
            conn, tenant, "plan", state, facts, at, evolve=pl.evolve, snapshot=("plan", plan_view)
        )

    async def create(self, tenant: str, fields: ev.PlanFields, prices: list[tuple[str, int]]) -> dict:
        """`prices`: (currency, amount) pairs, one per currency."""

        async def run(conn):
            state = pl.Plan(id=new_id("plan"))
            priced = [ev.PriceData(price_id=new_id("price"), currency=c, amount=a) for c, a in prices]
            facts = pl.decide_create(state, fields, priced)
            await repo.claim_plan_code(conn, tenant, fields.code, state.id)
            return plan_view(await self._record(conn, tenant, state, facts), tenant)

        return await self.app.transact(run)

    async def update(self, tenant: str, plan_id: str, changes: ev.PlanFields) -> dict:
        async def run(conn):
            state = await self.load(conn, tenant, plan_id)
            return plan_view(await self._record(conn, tenant, state, pl.decide_update(state, changes)), tenant)

        return await self.app.transact(run)

    async def delete(self, tenant: str, plan_id: str) -> None:
        async def run(conn):
            state = await self.load(conn, tenant, plan_id)
            facts = pl.decide_delete(state, await repo.subscriptions_on_plan(conn, tenant, plan_id))
            await repo.release_plan_code(conn, plan_id)
            await self._record(conn, tenant, state, facts)

        await self.app.transact(run)

    async def get(self, tenant: str, plan_id: str) -> dict:
        async with self.app.pool.acquire() as conn:
            return plan_view(await self.load(conn, tenant, plan_id), tenant)

    async def add_price(self, tenant: str, plan_id: str, currency: str, amount: int) -> dict:
        async def run(conn):
            state = await self.load(conn, tenant, plan_id)
            price = ev.PriceData(price_id=new_id("price"), currency=currency, amount=amount)
            after = await self._record(conn, tenant, state, pl.decide_add_price(state, price))
            return price_view(plan_id, after.prices[price.price_id])

        return await self.app.transact(run)

    async def change_price(self, tenant: str, plan_id: str, price_id: str, amount: int) -> dict:
        async def run(conn):
            state = await self.load(conn, tenant, plan_id)
            after = await self._record(conn, tenant, state, pl.decide_change_price(state, price_id, amount))
            return price_view(plan_id, after.prices[price_id])

        return await self.app.transact(run)

    async def remove_price(self, tenant: str, plan_id: str, price_id: str) -> None:
        async def run(conn):
            state = await self.load(conn, tenant, plan_id)
            await self._record(conn, tenant, state, pl.decide_remove_price(state, price_id))

        await self.app.transact(run)
