"""Subscriptions renewing themselves against a real PostgreSQL: a test world's clock jumps, the
timers fire each period's renewal in order from its own boundary, each period gets its invoice
once however often the timers run, a price change bills only later periods, and a cancellation
at period end ends the subscription without another invoice."""

from datetime import UTC, datetime, timedelta

import pytest

from services.invoicing.app import reactions
from services.invoicing.app.invoices import Invoicing
from services.invoicing.app.subscriptions import Subscriptions
from services.invoicing.domain import events as ev
from services.invoicing.service import service as invoicing
from shared import timers
from shared.db import migrate

TENANT = "ten_subs_test"
T0 = datetime(2027, 1, 31, 9, tzinfo=UTC)


@pytest.fixture
async def world(pool, database):
    await migrate(database, invoicing.migrations)
    await pool.execute("INSERT INTO tenant_clocks (tenant_id, frozen_time, version) VALUES ($1, $2, 1)", TENANT, T0)
    app = Invoicing(pool, invoicing.aggregates)
    subs = Subscriptions(app)
    runner = timers.TimerRunner(database, pool, subs.timer_handlers())

    async def advance_to(moment: datetime) -> int:
        await pool.execute("UPDATE tenant_clocks SET frozen_time = $2 WHERE tenant_id = $1", TENANT, moment)
        return await runner.fire_due()

    return app, subs, runner, advance_to


async def invoices_of(pool, subscription_id: str) -> list[dict]:
    rows = await pool.fetch(
        "SELECT view FROM invoice_list WHERE subscription_id = $1 ORDER BY created_at, invoice_id", subscription_id
    )
    return [r["view"] for r in rows]


async def events_of(pool, stream: str) -> list[str]:
    return [
        r["event_type"]
        for r in await pool.fetch("SELECT event_type FROM events WHERE stream_id = $1 ORDER BY version", stream)
    ]


async def test_a_trial_then_renewals_each_billed_once_from_its_own_boundary(world, pool):
    app, subs, runner, advance_to = world
    customer = (await app.create_customer(TENANT, ev.CustomerFields(name="Ada", email="ada@example.com")))["id"]
    plan = await subs.plans.create(
        TENANT,
        ev.PlanFields(code="pro", name="Pro", interval="month", interval_count=1, trial_days=14),
        [("USD", 1000)],
    )
    sub = await subs.create(
        TENANT,
        customer_id=customer,
        plan_id=plan["id"],
        currency="USD",
        quantity=2,
        start=None,
        trial_days=None,
        metadata=None,
    )
    assert (sub["status"], sub["currentPeriod"], sub["trialEnd"]) == ("TRIALING", 0, "2027-02-14T09:00:00Z")
    assert await invoices_of(pool, sub["id"]) == []

    assert await advance_to(T0 + timedelta(days=12)) == 1  # three days before the trial ends
    assert (await events_of(pool, sub["id"]))[-1] == "subscription.trial_ending"

    await advance_to(datetime(2027, 4, 20, tzinfo=UTC))  # trial end, then Mar 14 and Apr 14
    got = await subs.get(TENANT, sub["id"])
    assert (got["status"], got["currentPeriod"], got["currentPeriodStart"]) == ("ACTIVE", 3, "2027-04-14T09:00:00Z")
    bills = await invoices_of(pool, sub["id"])
    assert [(b["status"], b["total"], b["issuedOn"]) for b in bills] == [
        ("PENDING", 2000, "2027-02-14"),
        ("PENDING", 2000, "2027-03-14"),
        ("PENDING", 2000, "2027-04-14"),
    ]
    assert bills[0]["items"][0]["description"] == "Pro (Feb 14, 2027 - Mar 14, 2027)"
    assert {b["sentAt"] is not None for b in bills} == {True}  # no automatic payment: sent to the customer
    assert got["latestInvoiceId"] == bills[-1]["id"]

    # Running the timers again, or setting a fired one again, bills nothing twice.
    assert await runner.fire_due() == 0
    async with pool.acquire() as conn, conn.transaction():
        await timers.schedule(
            conn,
            key=f"{sub['id']}:period-1:end",
            tenant_id=TENANT,
            kind="subscription.period_end",
            subject=sub["id"],
            fire_at=datetime(2027, 3, 14, 9, tzinfo=UTC),
        )
    assert await runner.fire_due() == 0 and len(await invoices_of(pool, sub["id"])) == 3

    # A new price bills the periods that begin after it, never the invoices already issued.
    price = plan["prices"][0]["id"]
    await subs.plans.change_price(TENANT, plan["id"], price, 1500)
    await advance_to(datetime(2027, 5, 15, tzinfo=UTC))
    bills = await invoices_of(pool, sub["id"])
    assert [b["total"] for b in bills] == [2000, 2000, 2000, 3000]

    # Cancelled at the period's end: ACTIVE until then, ENDED at the boundary, no further invoice.
    cancelled = await subs.cancel(TENANT, sub["id"], at_period_end=True, reason="moving on")
    assert (cancelled["status"], cancelled["cancelAtPeriodEnd"]) == ("ACTIVE", True)
    await advance_to(datetime(2027, 8, 1, tzinfo=UTC))
    ended = await subs.get(TENANT, sub["id"])
    assert (ended["status"], ended["endedAt"]) == ("ENDED", "2027-06-14T09:00:00Z")
    assert len(await invoices_of(pool, sub["id"])) == 4
    assert await timers.pending(pool, TENANT) == 0


async def test_monthly_periods_keep_the_day_they_began_on(world, pool):
    app, subs, _, advance_to = world
    customer = (await app.create_customer(TENANT, ev.CustomerFields(name="Bo", auto_collection=True)))["id"]
    plan = await subs.plans.create(
        TENANT,
        ev.PlanFields(code="basic", name="Basic", interval="month", interval_count=1, trial_days=0),
        [("KES", 500)],
    )
    sub = await subs.create(
        TENANT,
        customer_id=customer,
        plan_id=plan["id"],
        currency="KES",
        quantity=1,
        start=None,
        trial_days=None,
        metadata=None,
    )
    assert (sub["status"], sub["currentPeriod"], sub["currentPeriodEnd"]) == ("ACTIVE", 1, "2027-02-28T09:00:00Z")
    await advance_to(datetime(2027, 5, 1, tzinfo=UTC))
    bills = await invoices_of(pool, sub["id"])
    assert [b["issuedOn"] for b in bills] == ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]
    assert {(b["status"], b["autoCollection"], b["sentAt"]) for b in bills} == {("PENDING", True, None)}


async def test_a_failed_collection_makes_the_subscription_past_due_until_its_invoice_is_paid(world, pool):
    app, subs, _, advance_to = world
    customer = (await app.create_customer(TENANT, ev.CustomerFields(name="Cy", auto_collection=True)))["id"]
    plan = await subs.plans.create(
        TENANT,
        ev.PlanFields(code="team", name="Team", interval="month", interval_count=1, trial_days=0),
        [("USD", 800)],
    )
    sub = await subs.create(
        TENANT,
        customer_id=customer,
        plan_id=plan["id"],
        currency="USD",
        quantity=1,
        start=None,
        trial_days=None,
        metadata=None,
    )
    first = sub["latestInvoiceId"]
    async with pool.acquire() as conn, conn.transaction():
        await reactions.on_payment_failed(
            app, conn, TENANT, first, payment_id="pay_1", reason_code="card_declined", reason=None, attempt=1
        )
    assert (await subs.get(TENANT, sub["id"]))["status"] == "PAST_DUE"
    async with pool.acquire() as conn, conn.transaction():  # the same failure again changes nothing
        await reactions.on_payment_failed(
            app, conn, TENANT, first, payment_id="pay_1", reason_code="card_declined", reason=None, attempt=1
        )
    assert (await events_of(pool, sub["id"])).count("subscription.past_due") == 1
    await app.record_offline_payment(TENANT, first, amount=None, method="bank_transfer", reference=None, paid_on=None)
    assert (await subs.get(TENANT, sub["id"]))["status"] == "ACTIVE"
    assert (await events_of(pool, sub["id"]))[-1] == "subscription.recovered"
    # A past-due subscription still renews; the new period's invoice is the one that counts.
    await advance_to(datetime(2027, 3, 1, tzinfo=UTC))
    assert (await subs.get(TENANT, sub["id"]))["currentPeriod"] == 2
