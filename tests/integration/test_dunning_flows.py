"""Dunning against the real PostgreSQL and Kafka: invoice and payment events in on their topics,
dunning events out on its own, time moved by a ManualClock (never slept through)."""

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from services.dunning.app import repository as repo
from services.dunning.domain.dunning import OUTCOME_TIMEOUT
from services.dunning.domain.policy import Policy
from tests.conftest import eventually
from tests.support.dunning_harness import (
    add_api_key,
    as_utc,
    invoice_event,
    payment_event,
    start_in_process,
    stop_in_process,
)

T0 = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
DUE = date(2027, 3, 10)
TENANT = "ten_dunning_a_test"  # the test world of ten_dunning_a


@pytest.fixture
async def dun(database, kafka):
    running = await start_in_process(database, kafka, T0)
    try:
        yield running
    finally:
        await stop_in_process(running)


async def finalize(dun, invoice_id: str, *, due: date = DUE, tenant: str = TENANT):
    event = invoice_event(tenant, invoice_id, 2, "invoice.finalized", status="PENDING", due=due, number="INV-1")
    await dun.invoices(event)
    await eventually(lambda: dun.handled(event, "invoices"))
    return event


async def fail(dun, invoice_id: str, *, automatic: bool = True, tenant: str = TENANT):
    event = payment_event(tenant, invoice_id, "payment.failed", automatic=automatic)
    await dun.payments(event)
    await eventually(lambda: dun.handled(event, "payments"))


async def nothing_fires(dun, moment: datetime) -> None:
    """Move the clock to `moment` and prove that no timer fires there, whoever fires it.

    The background engine is woken by the move and may fire before a synchronous run does, so
    a synchronous run finding nothing proves nothing alone: count the fired timers in the
    database, with every firing in flight settled, before and after the move."""
    while True:  # first let whatever is due before the move fire, here or in the background
        await dun.dunning.engine.fire_due()
        before = await dun.settled()
        if not await repo.due_invoices(dun.pool, dun.clock.now(), 1):
            break
    dun.clock.set(moment)
    assert await dun.dunning.engine.fire_due() == 0
    assert await dun.settled() == before, "a timer fired in the background"


async def test_overdue_fires_once_at_the_right_time(dun):
    await repo.save_policy(dun.pool, TENANT, Policy(grace_period_days=2), T0)
    finalized = await finalize(dun, "inv_overdue")
    expected = datetime(2027, 3, 13, tzinfo=UTC)  # the day after the due date, plus two days' grace
    assert await dun.pending("inv_overdue") == {"overdue": expected}

    await nothing_fires(dun, expected - timedelta(seconds=1))
    assert await dun.pending("inv_overdue") == {"overdue": expected}  # not fired early
    assert await dun.published() == []  # everything published so far, read to the end

    dun.clock.set(expected)
    [event] = await dun.tail.wait_for(lambda e: e["type"] == "dunning.due_date_passed")
    assert event["subject"] == "inv_overdue" and event["tenantid"] == TENANT
    assert event["data"]["invoiceId"] == "inv_overdue" and event["data"]["dueDate"] == "2027-03-10"
    assert event["data"]["dunning"] == {
        "invoiceId": "inv_overdue",
        "status": "IN_PROGRESS",
        "attempts": 0,
        "nextRetryAt": None,
        "updatedAt": "2027-03-13T00:00:00Z",
    }
    assert as_utc(event["time"]) == expected and event["sequence"] == "1"

    # Redelivery, a newer snapshot of the still-unpaid invoice, and more time: still once.
    await dun.invoices(finalized)
    sent = invoice_event(TENANT, "inv_overdue", 3, "invoice.sent", status="PENDING", due=DUE)
    await dun.invoices(sent)
    await eventually(lambda: dun.handled(sent, "invoices"))
    await nothing_fires(dun, dun.clock.now() + timedelta(days=30))
    await dun.published()  # the topic read to its end, not one short poll
    assert len(dun.tail.of("inv_overdue")) == 1
    assert await dun.pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'inv_overdue'") == 1


async def test_payment_before_the_due_date_cancels_the_overdue_timer(dun):
    await finalize(dun, "inv_paid")
    assert list(await dun.pending("inv_paid")) == ["overdue"]
    paid = payment_event(TENANT, "inv_paid", "payment.succeeded", amount=18000)
    await dun.payments(paid)
    await eventually(lambda: dun.handled(paid, "payments"))
    assert await dun.pending("inv_paid") == {}  # the payment alone is enough

    # invoicing's own record of it arrives later, then a stale snapshot overtaken by it
    invoice_paid = invoice_event(TENANT, "inv_paid", 4, "invoice.paid", status="PAID", due=DUE, amount_due=0)
    stale = invoice_event(TENANT, "inv_paid", 3, "invoice.sent", status="PENDING", due=DUE)
    await dun.invoices(invoice_paid, stale)
    await eventually(lambda: dun.handled(stale, "invoices"))
    assert await dun.pending("inv_paid") == {}

    await nothing_fires(dun, dun.clock.now() + timedelta(days=60))
    await dun.published()  # the topic read to its end, not one short poll
    assert dun.tail.of("inv_paid") == []


async def test_paid_snapshot_that_overtook_the_finalized_one_sets_no_timer(dun):
    # Reordered delivery: the newer PAID snapshot first, the older PENDING one after it.
    paid = invoice_event(TENANT, "inv_reordered", 3, "invoice.paid", status="PAID", due=DUE, amount_due=0)
    late = invoice_event(TENANT, "inv_reordered", 2, "invoice.finalized", status="PENDING", due=DUE)
    await dun.invoices(paid, late)
    await eventually(lambda: dun.handled(late, "invoices"))
    assert await dun.pending("inv_reordered") == {}
    row = await dun.pool.fetchrow("SELECT status, version FROM invoice_schedule WHERE invoice_id = 'inv_reordered'")
    assert (row["status"], row["version"]) == ("PAID", 3)


async def walk_retries(dun, invoice_id: str, attempts: int) -> list[datetime]:
    """Fail each retry as payments would; returns when each retry was scheduled for."""
    scheduled = []
    for attempt in range(1, attempts + 1):
        [event] = await dun.tail.wait_for(
            lambda e, attempt=attempt: (
                e["subject"] == invoice_id
                and e["type"] == "dunning.retry_scheduled"
                and e["data"]["attempt"] == attempt
            )
        )
        at = as_utc(event["data"]["scheduledAt"])
        scheduled.append(at)
        await nothing_fires(dun, at - timedelta(minutes=1))
        assert f"retry:{attempt}" in await dun.pending(invoice_id)  # not fired early
        dun.clock.set(at)
        [due] = await dun.tail.wait_for(
            lambda e, attempt=attempt: (
                e["subject"] == invoice_id and e["type"] == "dunning.retry_due" and e["data"]["attempt"] == attempt
            )
        )
        assert due["data"]["dunning"]["attempts"] == attempt and due["data"]["dunning"]["nextRetryAt"] is None
        if attempt < attempts:
            await fail(dun, invoice_id)
    return scheduled


async def test_full_retry_ladder_ends_exhausted_with_the_final_action(dun):
    await repo.save_policy(dun.pool, TENANT, Policy(retry_intervals_days=[1, 3, 5, 7], final_action="void"), T0)
    await finalize(dun, "inv_ladder", due=date(2027, 2, 28))  # overdue at once: a separate timer
    await fail(dun, "inv_ladder")
    scheduled = await walk_retries(dun, "inv_ladder", 4)
    assert scheduled == [T0 + timedelta(days=n) for n in (1, 4, 9, 16)]
    await fail(dun, "inv_ladder")
    [exhausted] = await dun.tail.wait_for(lambda e: e["type"] == "dunning.exhausted")
    assert exhausted["data"]["attempts"] == 4 and exhausted["data"]["finalAction"] == "void"
    assert exhausted["data"]["dunning"]["status"] == "EXHAUSTED"

    types = [e["type"] for e in dun.tail.of("inv_ladder")]
    assert types == ["dunning.due_date_passed"] + ["dunning.retry_scheduled", "dunning.retry_due"] * 4 + [
        "dunning.exhausted"
    ]
    assert [int(e["sequence"]) for e in dun.tail.of("inv_ladder")] == list(range(1, 11))
    view = await dun.dunning.handlers.view(dun.pool, TENANT, "inv_ladder")
    assert (view["status"], view["attempts"], view["nextRetryAt"], view["upcoming"]) == ("EXHAUSTED", 4, None, [])

    await fail(dun, "inv_ladder")  # after exhaustion, another failure changes nothing
    await nothing_fires(dun, dun.clock.now() + timedelta(days=30))
    await dun.published()  # the topic read to its end, not one short poll
    assert len(dun.tail.of("inv_ladder")) == 10


async def test_a_retry_without_outcome_counts_as_failed_after_the_watchdog(dun):
    """Payments skipped the retry (a hosted payment was in flight) and that payment then failed
    as a manual one: no outcome of the retry ever comes, yet dunning goes on."""
    await finalize(dun, "inv_silent")
    await fail(dun, "inv_silent")
    await walk_retries(dun, "inv_silent", 1)
    await fail(dun, "inv_silent", automatic=False)  # the in-flight hosted payment: not an outcome
    due_at = dun.clock.now()
    pending = await dun.pending("inv_silent")
    assert set(pending) == {"overdue", "outcome:1"} and pending["outcome:1"] == due_at + OUTCOME_TIMEOUT

    await nothing_fires(dun, due_at + OUTCOME_TIMEOUT - timedelta(seconds=1))
    dun.clock.set(due_at + OUTCOME_TIMEOUT)
    [unanswered] = await dun.tail.wait_for(
        lambda e: e["subject"] == "inv_silent" and e["type"] == "dunning.retry_unanswered"
    )
    assert unanswered["data"]["attempt"] == 1
    [second] = await dun.tail.wait_for(
        lambda e: e["subject"] == "inv_silent" and e["type"] == "dunning.retry_scheduled" and e["data"]["attempt"] == 2
    )
    assert as_utc(second["data"]["scheduledAt"]) == due_at + OUTCOME_TIMEOUT + timedelta(days=3)


async def test_an_outcome_in_time_cancels_the_watchdog(dun):
    await finalize(dun, "inv_answered")
    await fail(dun, "inv_answered")
    await walk_retries(dun, "inv_answered", 1)
    assert "outcome:1" in await dun.pending("inv_answered")
    await fail(dun, "inv_answered")  # the retry's own outcome
    assert set(await dun.pending("inv_answered")) == {"overdue", "retry:2"}
    await nothing_fires(dun, dun.clock.now() + OUTCOME_TIMEOUT)
    await dun.published()  # the topic read to its end, not one short poll
    assert "dunning.retry_unanswered" not in [e["type"] for e in dun.tail.of("inv_answered")]


async def test_success_on_the_second_retry_ends_in_success(dun):
    await finalize(dun, "inv_success")
    await fail(dun, "inv_success")
    await walk_retries(dun, "inv_success", 2)
    succeeded = payment_event(TENANT, "inv_success", "payment.succeeded", amount=18000)
    await dun.payments(succeeded)
    [event] = await dun.tail.wait_for(lambda e: e["type"] == "dunning.succeeded")
    assert event["data"]["dunning"]["status"] == "SUCCESS" and event["data"]["dunning"]["attempts"] == 2
    assert await dun.pending("inv_success") == {}  # overdue timer gone too: paid in full
    view = await dun.dunning.handlers.view(dun.pool, TENANT, "inv_success")
    assert (view["status"], view["attempts"]) == ("SUCCESS", 2)


async def test_a_redelivered_failure_schedules_one_retry(dun):
    await finalize(dun, "inv_redelivered")
    failure = payment_event(TENANT, "inv_redelivered", "payment.failed")
    await dun.payments(failure, failure)  # the relay may publish twice
    await eventually(lambda: dun.handled(failure, "payments"))
    another = payment_event(TENANT, "inv_redelivered", "payment.failed")  # while a retry is pending
    await dun.payments(another)
    await eventually(lambda: dun.handled(another, "payments"))
    await dun.tail.wait_for(lambda e: e["subject"] == "inv_redelivered")
    assert [e["type"] for e in dun.tail.of("inv_redelivered")] == ["dunning.retry_scheduled"]
    assert await dun.pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'inv_redelivered'") == 1
    assert set(await dun.pending("inv_redelivered")) == {"overdue", "retry:1"}


async def test_manual_payment_failure_starts_no_retries(dun):
    await finalize(dun, "inv_manual")
    await fail(dun, "inv_manual", automatic=False)
    assert list(await dun.pending("inv_manual")) == ["overdue"]
    await dun.published()  # the topic read to its end, not one short poll
    assert dun.tail.of("inv_manual") == []


async def test_failure_before_the_invoice_is_known_still_starts_dunning(dun):
    await fail(dun, "inv_early")  # the invoice's own events are late (another topic)
    [event] = await dun.tail.wait_for(lambda e: e["subject"] == "inv_early")
    assert event["type"] == "dunning.retry_scheduled"
    await finalize(dun, "inv_early")
    assert set(await dun.pending("inv_early")) == {"overdue", "retry:1"}


# -- the HTTP API -------------------------------------------------------------------------------


@pytest.fixture
async def api(dun):
    transport = httpx.ASGITransport(app=dun.dunning.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://dunning") as client:
        yield client


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


async def test_stop_dunning_stops_retries(dun, api):
    key, other = await add_api_key(dun.pool, TENANT), await add_api_key(dun.pool, "ten_other_test")
    await finalize(dun, "inv_stop")
    await fail(dun, "inv_stop")
    [scheduled] = await dun.tail.wait_for(lambda e: e["type"] == "dunning.retry_scheduled")

    r = await api.get("/api/invoices/inv_stop/dunning", headers=auth(key))
    assert r.status_code == 200
    body = r.json()
    assert (body["status"], body["attempts"], body["nextRetryAt"]) == (
        "IN_PROGRESS",
        0,
        scheduled["data"]["scheduledAt"],
    )
    assert [u["timer"] for u in body["upcoming"]] == ["retry", "overdue"]

    # Another tenant's invoice does not exist for this key.
    r = await api.post("/api/invoices/inv_stop/stop-dunning", headers=auth(other))
    assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"
    assert (await api.get("/api/invoices/inv_stop/dunning", headers=auth(other))).status_code == 404

    r = await api.post("/api/invoices/inv_stop/stop-dunning", headers=auth(key))
    assert r.status_code == 200 and r.json()["status"] == "STOPPED"
    [stopped] = await dun.tail.wait_for(lambda e: e["type"] == "dunning.stopped")
    assert stopped["data"]["dunning"]["status"] == "STOPPED" and stopped["data"]["invoiceId"] == "inv_stop"
    assert set(await dun.pending("inv_stop")) == {"overdue"}  # the pending retry:1 was cancelled
    again = await api.post("/api/invoices/inv_stop/stop-dunning", headers=auth(key))
    assert again.status_code == 200 and again.json()["status"] == "STOPPED"

    dun.clock.advance(timedelta(days=40))  # past the retry that was set, and the due date
    await dun.tail.wait_for(lambda e: e["subject"] == "inv_stop" and e["type"] == "dunning.due_date_passed")
    # Another failure after the stop starts nothing: no retry of any number (attempts are
    # still 0, so a broken guard would schedule retry:1), no event, the view still STOPPED.
    await fail(dun, "inv_stop")
    assert set(await dun.pending("inv_stop")) == set()  # overdue fired; no retry timer at all
    await dun.published()
    assert [e["type"] for e in dun.tail.of("inv_stop")] == [
        "dunning.retry_scheduled",
        "dunning.stopped",
        "dunning.due_date_passed",
    ]  # overdue is a fact, not dunning
    view = await dun.dunning.handlers.view(dun.pool, TENANT, "inv_stop")
    assert (view["status"], view["attempts"], view["nextRetryAt"]) == ("STOPPED", 0, None)


async def test_api_errors_and_the_policy(dun, api):
    key = await add_api_key(dun.pool, TENANT)
    assert (await api.get("/api/dunning/policy")).json()["error"]["code"] == "api_key_missing"
    r = await api.get("/api/invoices/inv_nope/dunning", headers=auth(key))
    assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"

    r = await api.get("/api/dunning/policy", headers=auth(key))
    assert r.json() == {
        "object": "dunning_policy",
        "livemode": False,
        "retryIntervalsDays": [1, 3, 5, 7],
        "finalAction": "mark_uncollectible",
        "gracePeriodDays": 0,
        "remindersBeforeDueDays": [],
        "remindersAfterDueDays": [],
        "maxAttempts": 4,
    }
    r = await api.put(
        "/api/dunning/policy",
        headers=auth(key),
        json={"retryIntervalsDays": [2, 2], "finalAction": "leave_open", "remindersAfterDueDays": [3]},
    )
    assert r.status_code == 200 and r.json()["maxAttempts"] == 2
    assert (await api.get("/api/dunning/policy", headers=auth(key))).json()["finalAction"] == "leave_open"
    r = await api.put("/api/dunning/policy", headers=auth(key), json={"finalAction": "burn"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "finalAction"
    r = await api.put("/api/dunning/policy", headers=auth(key), json={"retryIntervalsDays": [0]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_invalid"

    # The new policy drives what is scheduled next: an after-due reminder, retries two days apart.
    await finalize(dun, "inv_policy")
    assert set(await dun.pending("inv_policy")) == {"overdue", "reminder:after_due:3"}
    await fail(dun, "inv_policy")
    assert (await dun.pending("inv_policy"))["retry:1"] == T0 + timedelta(days=2)


async def test_test_clock_moves_a_sandbox_tenants_time(dun, api):
    tenant = "ten_sandbox_test"
    key = await add_api_key(dun.pool, tenant)
    await repo.save_policy(dun.pool, tenant, Policy(reminders_after_due_days=[1]), T0)
    r = await api.post(
        "/api/test-clocks", headers=auth(key), json={"name": "demo", "frozenTime": "2027-06-01T00:00:00Z"}
    )
    assert r.status_code == 201
    clock = r.json()
    assert (clock["object"], clock["livemode"], clock["frozenTime"], clock["status"]) == (
        "test_clock",
        False,
        "2027-06-01T00:00:00Z",
        "ready",
    )
    r = await api.post("/api/test-clocks", headers=auth(key), json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "test_clock_exists"

    await finalize(dun, "inv_demo", due=date(2027, 6, 10), tenant=tenant)
    await nothing_fires(dun, dun.clock.now() + timedelta(days=400))  # the service's clock is not this tenant's time

    r = await api.post(f"/api/test-clocks/{clock['id']}/advance", headers=auth(key), json={"days": 11})
    assert r.status_code == 200 and r.json()["frozenTime"] == "2027-06-12T00:00:00Z"
    await dun.tail.wait_for(lambda e: e["subject"] == "inv_demo" and e["type"] == "dunning.reminder_due")
    events = dun.tail.of("inv_demo")
    assert [e["type"] for e in events] == ["dunning.due_date_passed", "dunning.reminder_due"]
    assert [e["time"] for e in events] == ["2027-06-12T00:00:00Z"] * 2  # at the tenant's (test) time
    assert (await api.get(f"/api/test-clocks/{clock['id']}", headers=auth(key))).json()["status"] == "ready"

    await fail(dun, "inv_demo", tenant=tenant)
    assert (await dun.pending("inv_demo"))["retry:1"] == datetime(2027, 6, 13, tzinfo=UTC)

    r = await api.post(
        f"/api/test-clocks/{clock['id']}/advance", headers=auth(key), json={"frozenTime": "2027-01-01T00:00:00Z"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "test_clock_backwards"
    r = await api.post(f"/api/test-clocks/{clock['id']}/advance", headers=auth(key), json={})
    assert r.status_code == 400

    other = await add_api_key(dun.pool, "ten_someone_test")
    assert (await api.get(f"/api/test-clocks/{clock['id']}", headers=auth(other))).status_code == 404
    live = await add_api_key(dun.pool, "ten_live")
    r = await api.post("/api/test-clocks", headers=auth(live), json={})
    assert r.status_code == 403 and r.json()["error"]["code"] == "test_mode_only"

    assert (await api.get("/api/test-clocks", headers=auth(key))).json()["data"][0]["id"] == clock["id"]
    r = await api.delete(f"/api/test-clocks/{clock['id']}", headers=auth(key))
    assert r.json() == {"id": clock["id"], "object": "test_clock", "livemode": False, "deleted": True}
    assert (await api.get("/api/test-clocks", headers=auth(key))).json() == {"data": []}
