"""Dunning's application layer: lock the invoice's row, fold its dunning stream, decide, and
append the events and set the timers in the caller's one transaction."""

from dataclasses import replace
from datetime import datetime

import asyncpg

from shared import auth
from shared.aggregate import Aggregates
from shared.errors import NotFound
from shared.logs import get_logger

from ..domain import dunning as d
from ..domain.dunning import Decision, Dunning
from ..domain.events import STREAM_TYPE, type_of
from ..domain.schedule import INVOICE_TIMER_KINDS, OUTCOME, OVERDUE, REMINDER, RETRY, InvoiceFacts, plan_invoice_timers
from . import repository as repo
from .clock import Clock, iso

log = get_logger(__name__)


class DunningHandlers:
    def __init__(self, aggregates: Aggregates, clock: Clock) -> None:
        self.aggregates, self.clock = aggregates, clock

    async def now(self, conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str) -> datetime:
        return await repo.tenant_now(conn, tenant_id, self.clock)

    async def load(self, conn: asyncpg.Connection, invoice_id: str) -> Dunning:
        stream = await self.aggregates.load(conn, invoice_id)
        return d.fold(stream.history, invoice_id)

    async def apply(
        self, conn: asyncpg.Connection, tenant_id: str, state: Dunning, decision: Decision, now: datetime
    ) -> None:
        await repo.cancel(conn, state.invoice_id, decision.cancel)
        await repo.schedule(conn, tenant_id, state.invoice_id, decision.schedule)
        if decision.events:
            await self.aggregates.append(
                conn,
                STREAM_TYPE,
                state.invoice_id,
                state.version,
                [(type_of(e), e) for e in decision.events],
                tenant_id=tenant_id,
                at=now,
            )
            for e in decision.events:
                log.info(
                    "dunning event",
                    type=type_of(e),
                    invoice_id=state.invoice_id,
                    status=e.dunning.status,
                    attempts=e.dunning.attempts,
                )

    # -- from billing.invoices ----------------------------------------------------------------

    async def on_invoice(self, conn: asyncpg.Connection, facts: InvoiceFacts, *, version: int, at: datetime) -> None:
        row = await repo.lock_invoice(conn, facts.invoice_id, facts.tenant_id)
        if row["tenant_id"] != facts.tenant_id:
            log.warning("invoice event from another tenant ignored", invoice_id=facts.invoice_id)
            return
        if row["version"] >= version:
            log.info("older invoice event ignored", invoice_id=facts.invoice_id, seen=row["version"], got=version)
            return
        facts = replace(facts, paid_in_full=row["paid_in_full"])
        await repo.save_invoice(conn, facts, version, at)
        now = await self.now(conn, facts.tenant_id)
        state = await self.load(conn, facts.invoice_id)
        if facts.is_closed:
            await self.apply(
                conn, facts.tenant_id, state, d.on_invoice_closed(state, now, invoice_status=facts.status), now
            )
            return
        policy = await repo.load_policy(conn, facts.tenant_id)
        specs = plan_invoice_timers(
            facts,
            overdue_recorded=state.overdue_recorded,
            dunning_stopped=state.status == d.STOPPED,
            policy=policy,
            now=now,
            existing_keys=await repo.timer_keys(conn, facts.invoice_id),
        )
        await repo.cancel(conn, facts.invoice_id, INVOICE_TIMER_KINDS, keep=frozenset(s.key for s in specs))
        await repo.schedule(conn, facts.tenant_id, facts.invoice_id, specs)

    # -- from billing.payments ----------------------------------------------------------------

    async def _locked(self, conn: asyncpg.Connection, tenant_id: str, invoice_id: str) -> asyncpg.Record | None:
        row = await repo.lock_invoice(conn, invoice_id, tenant_id)
        if row["tenant_id"] != tenant_id:
            log.warning("payment event from another tenant ignored", invoice_id=invoice_id)
            return None
        return row

    async def on_payment_failed(
        self, conn: asyncpg.Connection, tenant_id: str, invoice_id: str, *, automatic: bool
    ) -> None:
        if (row := await self._locked(conn, tenant_id, invoice_id)) is None:
            return
        now, state = await self.now(conn, tenant_id), await self.load(conn, invoice_id)
        policy = await repo.load_policy(conn, tenant_id)
        decision = d.on_payment_failed(
            state, policy, now, automatic=automatic, invoice_closed=repo.facts_of(row).is_closed
        )
        await self.apply(conn, tenant_id, state, decision, now)

    async def on_payment_succeeded(
        self, conn: asyncpg.Connection, tenant_id: str, invoice_id: str, *, amount: int
    ) -> None:
        if (row := await self._locked(conn, tenant_id, invoice_id)) is None:
            return
        now, state = await self.now(conn, tenant_id), await self.load(conn, invoice_id)
        if 0 < row["amount_due"] <= amount and row["version"] > 0:
            # Paid in full: stop the invoice's timers now rather than when invoicing says PAID.
            await repo.mark_paid_in_full(conn, invoice_id)
            decision = d.on_invoice_closed(state, now, invoice_status="PAID")
        else:
            decision = d.on_payment_succeeded(state, now)
        await self.apply(conn, tenant_id, state, decision, now)

    # -- from the timer engine ----------------------------------------------------------------

    async def fire(self, conn: asyncpg.Connection, row: asyncpg.Record, timer: asyncpg.Record, now: datetime) -> None:
        """A due timer: decide what it means now (the world may have moved since it was set)."""
        facts, state = repo.facts_of(row), await self.load(conn, timer["invoice_id"])
        payload = timer["payload"]
        if timer["kind"] == OVERDUE:
            decision = d.on_overdue_timer(state, facts, now)
        elif timer["kind"] == RETRY:
            decision = d.on_retry_timer(state, now, attempt=payload["attempt"])
        elif timer["kind"] == OUTCOME:
            decision = d.on_outcome_timer(
                state,
                await repo.load_policy(conn, row["tenant_id"]),
                now,
                attempt=payload["attempt"],
                invoice_closed=facts.is_closed,
            )
        elif timer["kind"] == REMINDER:
            decision = d.on_reminder_timer(state, facts, now, kind=payload["kind"], days=payload["days"])
        else:
            raise ValueError(f"unknown timer kind {timer['kind']}")
        if not decision.events:
            log.info(
                "timer fired with nothing to do", kind=timer["kind"], key=timer["key"], invoice_id=timer["invoice_id"]
            )
        await self.apply(conn, row["tenant_id"], state, decision, now)

    # -- the API ------------------------------------------------------------------------------

    async def stop(self, pool: asyncpg.Pool, tenant_id: str, invoice_id: str) -> dict:
        async with pool.acquire() as conn, conn.transaction():
            if await repo.find_invoice(conn, tenant_id, invoice_id) is None:
                raise NotFound("invoice", invoice_id)
            row = await repo.lock_invoice(conn, invoice_id, tenant_id)
            now, state = await self.now(conn, tenant_id), await self.load(conn, invoice_id)
            decision = d.stop(state, now, invoice_closed=repo.facts_of(row).is_closed)
            await self.apply(conn, tenant_id, state, decision, now)
            return await self._view(conn, row, await self.load(conn, invoice_id))

    async def view(self, pool: asyncpg.Pool, tenant_id: str, invoice_id: str) -> dict:
        async with pool.acquire() as conn:
            row = await repo.find_invoice(conn, tenant_id, invoice_id)
            if row is None:
                raise NotFound("invoice", invoice_id)  # another tenant's invoice does not exist here
            return await self._view(conn, row, await self.load(conn, invoice_id))

    async def _view(self, conn: asyncpg.Connection, row: asyncpg.Record, state: Dunning) -> dict:
        policy = await repo.load_policy(conn, row["tenant_id"])
        upcoming = [
            {"timer": t["kind"], "fireAt": iso(t["fire_at"]), **t["payload"]}
            for t in await repo.pending_timers(conn, row["invoice_id"])
        ]
        return {
            "object": "dunning",
            "livemode": auth.livemode(row["tenant_id"]),
            **state.snapshot().dump(),
            "maxAttempts": policy.max_attempts,
            "overdue": state.overdue_recorded,
            "upcoming": upcoming,
        }
