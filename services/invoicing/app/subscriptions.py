"""Subscriptions: commands, reads and the timers that move them from period to period.

Each command is one transaction: load the subscription (and its plan), decide, issue the period's
invoice when one begins (Invoicing.issue, on the same connection), record, and set the timer of
the period's end (shared/timers.py). The timer's handler does the same when it fires, with the
moment it was due as the time of everything it records, so a renewal that fires late (or many
at once after a test clock jumps) still bills each period from its own boundary. A period's
timer key names the subscription and the period, so it fires once however often it is set.

Subscriptions live in the tenant's time: a test world's test clock when it has one.
"""

from datetime import datetime, timedelta

from shared import timers
from shared.errors import NotFound, Refused
from shared.ids import new_id

from ..domain import events as ev
from ..domain import subscription as sb
from ..domain.plan import Plan
from .invoices import Invoicing
from .plans import Plans
from .views import subscription_view

PERIOD_END, TRIAL_ENDING = "subscription.period_end", "subscription.trial_ending"
MAX_BACKDATE = timedelta(days=366)


def _day(moment: datetime) -> str:
    return f"{moment:%b} {moment.day}, {moment.year}"


class Subscriptions:
    def __init__(self, app: Invoicing) -> None:
        self.app, self.plans = app, Plans(app)

    # -- loading ------------------------------------------------------------------------------

    async def load(self, conn, tenant: str, subscription_id: str) -> sb.Subscription:
        stream = await self.app.aggregates.load(conn, subscription_id)
        state = sb.fold(stream.history, subscription_id) if stream.is_a("subscription", tenant) else None
        if state is None or not state.exists:
            raise NotFound("subscription", subscription_id)
        return state

    async def _plan(self, conn, tenant: str, plan_id: str) -> Plan:
        try:
            return await self.plans.load(conn, tenant, plan_id)
        except NotFound:
            raise Refused("plan_not_found", f"No such plan: '{plan_id}'", field="planId") from None

    async def _new_terms(self, conn, tenant: str, plan_id: str, currency: str) -> sb.Terms:
        """A plan a subscription is to start on or move to: active, with a price in `currency`."""
        plan = await self._plan(conn, tenant, plan_id)
        if not plan.active:
            raise Refused("plan_inactive", "This plan takes no new subscriptions.", field="planId")
        price = plan.price_in(currency)
        if price is None:
            raise Refused("price_not_found", f"This plan has no {currency} price.", field="currency")
        return _terms(plan, price.id)

    async def _terms_of(self, conn, tenant: str, choice: ev.PlanChoice) -> sb.Terms:
        """The plan and price a running subscription is on, as they are now (a removed price still
        bills the subscriptions on it)."""
        plan = await self.plans.load(conn, tenant, choice.plan_id)
        return _terms(plan, choice.price_id)

    # -- recording ----------------------------------------------------------------------------

    async def _record(self, conn, tenant: str, state: sb.Subscription, facts, at: datetime) -> sb.Subscription:
        after = await self.app.record(
            conn,
            tenant,
            "subscription",
            state,
            facts,
            at,
            evolve=sb.evolve,
            snapshot=("subscription", subscription_view),
        )
        await self._set_timers(conn, tenant, after)
        return after

    async def _set_timers(self, conn, tenant: str, s: sb.Subscription) -> None:
        if s.status not in sb.RUNNING or s.period_end is None:
            return
        await timers.schedule(
            conn,
            key=f"{s.id}:period-{s.period}:end",
            tenant_id=tenant,
            kind=PERIOD_END,
            subject=s.id,
            fire_at=s.period_end,
        )
        if (
            s.status == sb.TRIALING
            and s.trial_end
            and s.trial_end - sb.TRIAL_ENDING_NOTICE > (s.created_at or s.trial_end)
        ):
            await timers.schedule(
                conn,
                key=f"{s.id}:trial-ending",
                tenant_id=tenant,
                kind=TRIAL_ENDING,
                subject=s.id,
                fire_at=s.trial_end - sb.TRIAL_ENDING_NOTICE,
            )

    async def _bill(self, conn, tenant: str, s: sb.Subscription, lines: list[ev.LineData], at: datetime) -> str:
        fields = ev.DraftFields(currency=s.currency, items=lines, subscription_id=s.id)
        invoice = await self.app.issue(conn, tenant, s.customer_id or "", fields, at)
        return invoice["id"]

    @staticmethod
    def _period_line(terms: sb.Terms, quantity: int, start: datetime, end: datetime) -> ev.LineData:
        return ev.LineData(
            description=f"{terms.plan_name} ({_day(start)} - {_day(end)})", quantity=quantity, unit_amount=terms.amount
        )

    async def _now(self, conn, tenant: str) -> datetime:
        return await timers.tenant_now(conn, tenant, self.app.clock)

    # -- commands -----------------------------------------------------------------------------

    async def create(
        self,
        tenant: str,
        *,
        customer_id: str,
        plan_id: str,
        currency: str,
        quantity: int,
        start: datetime | None,
        trial_days: int | None,
        metadata: dict[str, str] | None,
    ) -> dict:
        async def run(conn):
            now = await self._now(conn, tenant)
            begin = start or now
            if begin > now or begin < now - MAX_BACKDATE:
                raise Refused(
                    "start_date_invalid",
                    "startDate is today or up to a year before (periods since are billed).",
                    field="startDate",
                )
            await self.app.aggregates.store.hold(conn, customer_id)  # not deleted while this is written
            await self.app.load_customer(conn, tenant, customer_id, field="customerId")
            terms = await self._new_terms(conn, tenant, plan_id, currency)
            state = sb.Subscription(id=new_id("sub"), currency=currency, customer_id=customer_id, quantity=quantity)
            trial = terms.trial_days if trial_days is None else trial_days
            invoice_id = None
            if not trial:
                end = sb.add_interval(begin, terms.interval, terms.interval_count, begin.day)
                invoice_id = await self._bill(
                    conn, tenant, state, [self._period_line(terms, quantity, begin, end)], begin
                )
            facts = sb.decide_create(
                state,
                customer_id=customer_id,
                currency=currency,
                quantity=quantity,
                terms=terms,
                start=begin,
                trial_days=trial_days,
                metadata=metadata,
                invoice_id=invoice_id,
            )
            return subscription_view(await self._record(conn, tenant, state, facts, begin), tenant)

        return await self.app.transact(run)

    async def change_plan(self, tenant: str, subscription_id: str, plan_id: str, *, at_period_end: bool, prorate: bool):
        async def run(conn):
            now = await self._now(conn, tenant)
            state = await self.load(conn, tenant, subscription_id)
            terms = await self._new_terms(conn, tenant, plan_id, state.currency or "")
            facts = sb.decide_change_plan(state, at=now, terms=terms, at_period_end=at_period_end, prorate_now=prorate)
            [(_, changed)] = facts
            customer = state.customer_id or ""
            # The unused part of the old price is the customer's credit, which the invoice for the
            # rest of the period on the new plan uses first.
            await self.app.add_credit(conn, tenant, customer, changed.credit, state.currency or "", now, "plan change")
            if changed.charge:
                assert state.period_end
                line = ev.LineData(
                    description=f"{terms.plan_name}, rest of the period ({_day(now)} - {_day(state.period_end)})",
                    quantity=1,
                    unit_amount=changed.charge,
                )
                invoice_id = await self._bill(conn, tenant, state, [line], now)
                facts = [("subscription.changed", changed.model_copy(update={"invoice_id": invoice_id}))]
            return subscription_view(await self._record(conn, tenant, state, facts, now), tenant)

        return await self.app.transact(run)

    async def cancel(self, tenant: str, subscription_id: str, *, at_period_end: bool, reason: str | None) -> dict:
        return await self._simple(
            tenant, subscription_id, lambda s, now: sb.decide_cancel(s, at_period_end=at_period_end, reason=reason)
        )

    async def pause(self, tenant: str, subscription_id: str) -> dict:
        return await self._simple(tenant, subscription_id, lambda s, now: sb.decide_pause(s))

    async def _simple(self, tenant: str, subscription_id: str, decide) -> dict:
        async def run(conn):
            now = await self._now(conn, tenant)
            state = await self.load(conn, tenant, subscription_id)
            return subscription_view(await self._record(conn, tenant, state, decide(state, now), now), tenant)

        return await self.app.transact(run)

    async def resume(self, tenant: str, subscription_id: str) -> dict:
        async def run(conn):
            now = await self._now(conn, tenant)
            state = await self.load(conn, tenant, subscription_id)
            sb.check_resumable(state)  # before any invoice is issued
            choice = ev.PlanChoice(plan_id=state.plan_id or "", price_id=state.price_id or "")
            terms = await self._terms_of(conn, tenant, choice)
            end = sb.add_interval(now, terms.interval, terms.interval_count, now.day)
            invoice_id = await self._bill(
                conn, tenant, state, [self._period_line(terms, state.quantity, now, end)], now
            )
            facts = sb.decide_resume(state, at=now, terms=terms, invoice_id=invoice_id)
            return subscription_view(await self._record(conn, tenant, state, facts, now), tenant)

        return await self.app.transact(run)

    async def get(self, tenant: str, subscription_id: str) -> dict:
        async with self.app.pool.acquire() as conn:
            return subscription_view(await self.load(conn, tenant, subscription_id), tenant)

    # -- timers -------------------------------------------------------------------------------

    async def on_period_end(self, conn, timer: timers.Timer) -> None:
        tenant, due = timer.tenant_id, timer.fire_at
        state = await self.load(conn, tenant, timer.subject)
        if state.status not in sb.RUNNING or state.period_end != due:
            return  # cancelled, paused, or a period that already moved on
        if state.cancel_at_period_end:
            facts = sb.decide_period_end(state, due=due, terms=None, invoice_id=None)
        else:
            choice = state.next_plan or ev.PlanChoice(plan_id=state.plan_id or "", price_id=state.price_id or "")
            terms = await self._terms_of(conn, tenant, choice)
            end = sb.add_interval(due, terms.interval, terms.interval_count, state.anchor_day)
            invoice_id = await self._bill(
                conn, tenant, state, [self._period_line(terms, state.quantity, due, end)], due
            )
            facts = sb.decide_period_end(state, due=due, terms=terms, invoice_id=invoice_id)
        await self._record(conn, tenant, state, facts, due)

    async def on_trial_ending(self, conn, timer: timers.Timer) -> None:
        state = await self.load(conn, timer.tenant_id, timer.subject)
        facts = sb.decide_trial_ending(state, due=timer.fire_at)
        if facts:
            await self._record(conn, timer.tenant_id, state, facts, timer.fire_at)

    def timer_handlers(self) -> dict[str, timers.Handler]:
        return {PERIOD_END: self.on_period_end, TRIAL_ENDING: self.on_trial_ending}


def _terms(plan: Plan, price_id: str) -> sb.Terms:
    price = plan.prices[price_id]
    f = plan.fields
    return sb.Terms(
        plan_id=plan.id or "",
        plan_name=f.name or "",
        price_id=price.id,
        amount=price.amount,
        interval=f.interval or "month",
        interval_count=f.interval_count or 1,
        trial_days=f.trial_days or 0,
    )
