"""Real dunning processes (`python -m services.dunning`) on real PostgreSQL and Kafka: two of
them never fire a timer twice, and one killed with timers due catches up, in order, on restart.
Business time is a test world's test clock, moved through the API."""

import asyncio
from datetime import UTC, date, datetime, timedelta

import httpx

from services.dunning.domain.policy import Policy
from tests.conftest import eventually
from tests.support.dunning_harness import (
    DunningProcess,
    Tail,
    add_api_key,
    create_topics,
    free_port,
    invoice_event,
    settings_env,
)
from tests.support.kafka import produce

TENANT = "ten_dunning_procs_test"  # a test world
T0 = datetime(2027, 5, 1, tzinfo=UTC)


async def started(*procs: DunningProcess) -> None:
    async def all_up():
        for p in procs:
            if p.proc.returncode is not None:
                raise AssertionError(f"dunning exited with {p.proc.returncode}: {p.log_path.read_text()[-3000:]}")
        return all(p.started() for p in procs)

    await eventually(all_up, timeout=60, interval=0.2)


async def seed(pool, kafka, topics, invoices: int) -> tuple[str, dict]:
    """A sandbox tenant at T0 on a test clock, with `invoices` finalized invoices due one a day."""
    key = await add_api_key(pool, TENANT)
    await pool.execute(
        """INSERT INTO dunning_policies (tenant_id, policy, updated_at) VALUES ($1, $2, now())""",
        TENANT,
        Policy(reminders_after_due_days=[1, 2]).dump(),
    )
    await pool.execute(
        """INSERT INTO test_clocks (id, tenant_id, name, frozen_time, created_at, updated_at)
           VALUES ('clock_procs', $1, 'procs', $2, now(), now())""",
        TENANT,
        T0,
    )
    events = [
        invoice_event(
            TENANT,
            f"inv_p{i:03d}",
            2,
            "invoice.finalized",
            status="PENDING",
            due=date(2027, 5, 2) + timedelta(days=i % 10),
        )
        for i in range(invoices)
    ]
    await produce(kafka, topics.invoices, events)

    async def all_scheduled():
        return await pool.fetchval("SELECT count(*) FROM timers WHERE fired_at IS NULL") == 3 * invoices

    await eventually(all_scheduled, timeout=60, interval=0.2)
    return key, {"Authorization": f"Bearer {key}"}


async def advance(proc: DunningProcess, headers: dict, to: datetime) -> None:
    async with httpx.AsyncClient(base_url=proc.url, headers=headers, timeout=10) as client:
        r = await client.post("/api/test-clocks/clock_procs/advance", json={"frozenTime": to.isoformat()})
        assert r.status_code == 200, r.text


async def fired(pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM timers WHERE fired_at IS NOT NULL")


def expected_order(rows) -> list[tuple]:
    return [(r["invoice_id"], r["key"]) for r in sorted(rows, key=lambda r: (r["fire_at"], r["priority"], r["id"]))]


async def test_two_dunning_processes_never_fire_a_timer_twice(pool, database, kafka, tmp_path):
    topics = await create_topics(kafka)
    env = settings_env(database, kafka, topics)  # one service name: one consumer group, scaled out
    procs = [
        DunningProcess({**env, "BILLSTREAM_DUNNING_HTTP_PORT": str(free_port())}, tmp_path / f"dunning-{n}.log")
        for n in range(2)
    ]
    for p in procs:
        await p.start()
    try:
        await started(*procs)
        n = 60
        _, headers = await seed(pool, kafka, topics, n)
        await advance(procs[0], headers, T0 + timedelta(days=30))

        async def all_fired():
            return await fired(pool) == 3 * n

        await eventually(all_fired, timeout=90, interval=0.2)

        # Exactly once on Kafka (the processes' relays publish what they committed).
        async with Tail(kafka, topics.dunning) as tail:

            async def published():
                return len(await tail.poll()) >= 3 * n

            await eventually(published, timeout=60)

            # Any duplicate too: once the outbox is empty every send was acknowledged, so the
            # topic's end offsets cover it; read up to them rather than for a fixed time.
            async def outbox_empty():
                return await pool.fetchval("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL")

            await eventually(outbox_empty, timeout=60)
            await tail.catch_up()
    finally:
        for p in procs:
            await p.kill()
    assert len(tail.events) == 3 * n
    assert len({(e["subject"], e["type"], e["data"].get("days")) for e in tail.events}) == 3 * n

    # Exactly one event per timer in the store, and each invoice's in due order.
    rows = await pool.fetch("""SELECT stream_id, version, envelope FROM events ORDER BY stream_id, version""")
    assert len(rows) == 3 * n
    by_invoice: dict[str, list[str]] = {}
    for r in rows:
        data = r["envelope"]["data"]
        by_invoice.setdefault(r["stream_id"], []).append(
            r["envelope"]["type"] + (f":{data['days']}" if "days" in data else "")
        )
    assert set(map(tuple, by_invoice.values())) == {
        ("dunning.due_date_passed", "dunning.reminder_due:1", "dunning.reminder_due:2")
    }

    fired_by = [sum(1 for line in p.log_lines() if line.get("event") == "timer fired") for p in procs]
    # Each timer fired by exactly one of the two. Which one wins how many is the scheduler's
    # business: on a loaded machine one process may take them all, so that is not asserted.
    assert sum(fired_by) == 3 * n, fired_by


async def test_a_process_killed_with_timers_due_catches_up_in_order_on_restart(pool, database, kafka, tmp_path):
    topics = await create_topics(kafka)
    env = settings_env(database, kafka, topics)
    crashing = await DunningProcess(env, tmp_path / "crashing.log", failpoints="dunning.after_timer_fired").start()
    try:
        await started(crashing)
        n = 12
        _, headers = await seed(pool, kafka, topics, n)
        # Every timer is due; the process dies right after committing the first one it fires.
        await advance(crashing, headers, T0 + timedelta(days=30))
        assert await asyncio.wait_for(crashing.proc.wait(), 60) == 137
    finally:
        await crashing.kill()
    assert await fired(pool) == 1
    timers = await pool.fetch("SELECT * FROM timers")
    order = expected_order(timers)
    first = await pool.fetchrow("SELECT invoice_id, key FROM timers WHERE fired_at IS NOT NULL")
    assert (first["invoice_id"], first["key"]) == order[0]  # the oldest went first

    # While it is down, time moves on a little more: nothing new, everything still due.
    await pool.execute("UPDATE test_clocks SET frozen_time = frozen_time + interval '1 day'")

    restarted = await DunningProcess(env, tmp_path / "restarted.log").start()
    try:
        await started(restarted)

        async def caught_up():
            return await fired(pool) == 3 * n

        await eventually(caught_up, timeout=60, interval=0.2)

        # The events were appended in the order the timers fell due.
        events = await pool.fetch("SELECT stream_id, envelope FROM events ORDER BY position")
        keys = [(e["stream_id"], _timer_key(e["envelope"])) for e in events]
        assert keys == order

        # Each went to Kafka (the crashed process's committed event included), once per event id.
        async with Tail(kafka, topics.dunning) as tail:

            async def published():
                return len({e["id"] for e in await tail.poll()}) == 3 * n

            await eventually(published, timeout=60)
    finally:
        await restarted.kill()


def _timer_key(envelope: dict) -> str:
    data = envelope["data"]
    if envelope["type"] == "dunning.due_date_passed":
        return "overdue"
    return f"reminder:{data['kind']}:{data['days']}"
