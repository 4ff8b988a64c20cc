"""Two kinds of failure (DESIGN.md rule 7) on the real servers: a transient one is retried until
it passes and loses nothing; a deterministic one parks the one event in dead_letters, everything
else goes on, and the operator replays or discards it with the service's CLI."""

import asyncio
import json
import sys
from datetime import date

import asyncpg
import httpx

from services.invoicing.app.invoices import Invoicing
from services.invoicing.domain import events as ev
from services.invoicing.domain.events import STREAM_TOPICS
from services.invoicing.projections.invoice_list import CustomerList, InvoiceList
from services.invoicing.service import service as invoicing
from shared.db import migrate
from shared.envelope import CloudEvent
from shared.eventstore import ConcurrencyError, EventStore
from shared.inbox import Delivery, InboxConsumer
from shared.projections import ProjectionRunner
from shared.service import Service
from shared.settings import ServiceSettings
from tests.conftest import caught_up, eventually
from tests.support.dead_letters import LEDGER_TABLE, STREAM_TYPE, Ledger, make_service, record_effect, store
from tests.support.kafka import committed_offsets, produce
from tests.support.processes import ROOT

TOO_BIG = 10**19  # does not fit a bigint: "value out of int64 range"


def account_event(stream: str, tenant: str, amount: int) -> CloudEvent:
    return CloudEvent.new(
        type="account.changed", source="/test", subject=stream, tenant_id=tenant, data={"amount": amount}
    )


async def append(pool, stream: str, tenant: str, amount: int) -> CloudEvent:
    event = account_event(stream, tenant, amount)
    async with pool.acquire() as conn, conn.transaction():
        version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1", stream)
        await store().append(conn, STREAM_TYPE, stream, version, [event])
    return event


async def ledger(pool) -> dict[str, int]:
    return {r["stream_id"]: int(r["amount"]) for r in await pool.fetch("SELECT stream_id, amount FROM ledger")}


async def cli(database: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.dead_letters",
        database,
        "dead-letters",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode()


# -- projections --------------------------------------------------------------------------------


async def test_a_poison_event_is_parked_and_other_tenants_events_still_apply(pool, database):
    await pool.execute(LEDGER_TABLE)
    runner = ProjectionRunner(database, pool, store(), [Ledger()], poll_interval=0.1)
    task = asyncio.create_task(runner.run())
    try:
        poison = await append(pool, "acct_a", "ten_a", TOO_BIG)
        await append(pool, "acct_a2", "ten_a", 5)
        # The runner has met the poison (parked it) before the other tenant's event exists: waited
        # on, not slept on, so a slow runner cannot turn this into "both applied in one batch".
        await eventually(lambda: pool.fetchval("SELECT count(*) FROM dead_letters WHERE event_id = $1", poison.id))
        await append(pool, "acct_b", "ten_b", 7)  # another tenant, later

        async def applied():
            return await ledger(pool) == {"acct_a2": 5, "acct_b": 7}

        await eventually(applied, timeout=10)
    finally:
        task.cancel()
    row = await pool.fetchrow("SELECT * FROM dead_letters")
    assert (row["source"], row["consumer"], row["stream_id"], row["event_id"], row["status"]) == (
        "projection",
        "ledger",
        "acct_a",
        poison.id,
        "parked",
    )
    assert "int64" in row["error"] and json.loads(row["payload"])["id"] == poison.id
    checkpoint = await pool.fetchval("SELECT position FROM projection_checkpoints WHERE name = 'ledger'")
    assert checkpoint == await pool.fetchval("SELECT max(position) FROM events")  # moved past the poison
    assert runner.retrying == {}


async def test_a_parked_projection_event_replays_after_a_fix(pool, database):
    await pool.execute(LEDGER_TABLE)
    await append(pool, "acct_a", "ten_a", TOO_BIG)
    await append(pool, "acct_b", "ten_b", 7)
    assert await caught_up(pool, store(), Ledger()) == 2
    assert await ledger(pool) == {"acct_b": 7}
    id = await pool.fetchval("SELECT id FROM dead_letters WHERE stream_id = 'acct_a'")

    code, out = await cli(database, "replay", str(id))
    assert code == 1 and "still fails" in out, out  # not fixed yet: stays parked
    assert await pool.fetchval("SELECT status FROM dead_letters WHERE id = $1", id) == "parked"

    await pool.execute("ALTER TABLE ledger ALTER COLUMN amount TYPE numeric")  # the fix
    code, out = await cli(database, "replay", str(id))
    assert code == 0 and "replayed into ledger" in out, out
    assert await ledger(pool) == {"acct_a": TOO_BIG, "acct_b": 7}
    row = await pool.fetchrow("SELECT status, resolved_at FROM dead_letters WHERE id = $1", id)
    assert row["status"] == "replayed" and row["resolved_at"] is not None
    code, out = await cli(database, "replay", str(id))
    assert code == 0 and "already replayed" in out, out


async def test_replaying_an_old_parked_event_leaves_the_streams_latest_state(pool, database):
    await pool.execute(LEDGER_TABLE)
    await append(pool, "acct_a", "ten_a", TOO_BIG)
    await caught_up(pool, store(), Ledger())
    await append(pool, "acct_a", "ten_a", 3)  # a later event of the same stream applies
    await caught_up(pool, store(), Ledger())
    await pool.execute("ALTER TABLE ledger ALTER COLUMN amount TYPE numeric")
    id = await pool.fetchval("SELECT id FROM dead_letters")
    code, out = await cli(database, "replay", str(id))
    assert code == 0, out
    assert await ledger(pool) == {"acct_a": 3}  # not rolled back to the parked event's amount


# -- consumers ----------------------------------------------------------------------------------


async def test_transient_failures_are_retried_until_the_effect_is_applied(pool):
    await pool.execute("CREATE TABLE effects (event_id text NOT NULL)")
    calls = 0

    async def conflicted_six_times(conn, event):
        nonlocal calls
        calls += 1
        if calls <= 6:
            raise ConcurrencyError(event.subject, 1, 2)
        await record_effect(conn, event)

    consumer = InboxConsumer("test.effects", conflicted_six_times, max_backoff=0.2)
    event = account_event("acct_t", "ten_a", 1)
    assert await consumer.process(pool, event.to_json(), Delivery("test.effects")) is True
    assert calls == 7 and consumer.retrying is None
    assert await pool.fetchval("SELECT count(*) FROM effects") == 1
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0


async def test_a_deterministic_failure_is_parked_at_once_and_consumption_goes_on(pool):
    await pool.execute("CREATE TABLE effects (event_id text NOT NULL)")
    calls = 0

    async def counting(conn, event):
        nonlocal calls
        calls += 1
        await record_effect(conn, event)

    consumer = InboxConsumer("test.effects", counting)
    bad = CloudEvent.new(
        type="account.changed", source="/test", subject="acct_x", tenant_id="ten_a", data={"refuse": True}
    )
    good = account_event("acct_y", "ten_b", 1)
    assert await consumer.process(pool, bad.to_json(), Delivery("test.effects", 1, 41)) is False
    assert calls == 1  # never retried
    assert await consumer.process(pool, good.to_json(), Delivery("test.effects", 1, 42)) is True
    row = await pool.fetchrow("SELECT * FROM dead_letters")
    assert (row["source"], row["consumer"], row["topic"], row["stream_id"], row["event_id"], row["offset"]) == (
        "consumer",
        "test.effects",
        "test.effects",
        "acct_x",
        bad.id,
        41,
    )
    assert "ValueError" in row["error"] and row["status"] == "parked"
    # Redelivered and failing the same way: still one dead letter.
    await consumer.process(pool, bad.to_json(), Delivery("test.effects", 1, 41))
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 1


async def test_terminated_connections_through_kafka_lose_nothing(pool, database, kafka, topic):
    """The real Service wiring: the handler's own backend is killed five times in a row (as a
    PostgreSQL restart would); the event is applied, in order, and nothing is dead-lettered."""
    await pool.execute("CREATE TABLE effects (n bigserial, event_id text NOT NULL)")
    admin = await asyncpg.connect(database)
    events = [account_event("acct_k", "ten_a", i) for i in range(3)]
    kills = 0
    service = Service(ServiceSettings(service_name="deadtest", database_url=database, kafka_bootstrap=kafka), topics={})

    @service.consume(topic, "killed")
    async def killed_five_times(conn, event):
        nonlocal kills
        if event.id == events[1].id and kills < 5:
            kills += 1
            await admin.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", event.id)

    await service.start()
    try:
        await produce(kafka, topic, events)
        seen_retrying = []

        async def all_applied():
            seen_retrying.extend((await service.failures())["retrying"])
            return await pool.fetchval("SELECT count(*) FROM effects") == 3

        await eventually(all_applied, timeout=60)

        async def offsets_committed():
            return sum((await committed_offsets(kafka, "deadtest.killed", topic)).values()) == 3

        await eventually(offsets_committed, timeout=30)
        status = await service.failures()
    finally:
        await service.stop()
        await admin.close()
    assert kills == 5
    assert await pool.fetchval("SELECT array_agg(event_id ORDER BY n) FROM effects") == [e.id for e in events]
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    assert status == {"deadLetters": {"parked": 0}, "retrying": []}
    assert any(r["name"] == "deadtest.killed" and r["eventId"] == events[1].id for r in seen_retrying)


async def test_ready_counts_parked_dead_letters_and_stays_ready(pool, database, kafka):
    await pool.execute("CREATE TABLE effects (event_id text NOT NULL)")
    service = make_service(database, kafka)
    service._pool = pool  # the HTTP app alone, without starting consumers
    refused = CloudEvent.new(
        type="account.changed", source="/test", subject="acct_r", tenant_id="ten_a", data={"refuse": True}
    )
    await service.consumers["deadtest.effects"].process(pool, refused.to_json(), Delivery("test.effects"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(service.app()), base_url="http://t") as http:
        answer = await http.get("/ready")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ready"] is True and body["deadLetters"] == {"parked": 1} and body["retrying"] == []


# -- the CLI ------------------------------------------------------------------------------------


async def test_cli_lists_shows_replays_and_discards_consumer_dead_letters(pool, database):
    await pool.execute("CREATE TABLE effects (event_id text NOT NULL)")
    service = make_service(database)
    consumer = service.consumers["deadtest.effects"]
    refused = [
        CloudEvent.new(
            type="account.changed", source="/test", subject=f"acct_{i}", tenant_id="ten_a", data={"refuse": True}
        )
        for i in range(2)
    ]
    for event in refused:
        await consumer.process(pool, event.to_json(), Delivery("test.effects", 0, 1))
    await consumer.process(pool, b"{not json", Delivery("test.effects", 0, 2))
    first, second, malformed = [r["id"] for r in await pool.fetch("SELECT id FROM dead_letters ORDER BY id")]

    code, out = await cli(database, "list")
    assert code == 0 and len(out.strip().splitlines()) == 3, out
    assert f"{first}\tparked\tconsumer\tdeadtest.effects\tacct_0\t{refused[0].id}" in out
    code, out = await cli(database, "show", str(first))
    shown = json.loads(out)
    assert shown["payload"]["id"] == refused[0].id and "refused" in shown["error"]

    # "Fixed": the first event is now accepted (its data no longer refused) and replays.
    fixed = refused[0].model_copy(update={"data": {"amount": 1}})
    await pool.execute("UPDATE dead_letters SET payload = $2 WHERE id = $1", first, fixed.to_json())
    code, out = await cli(database, "replay", str(first))
    assert code == 0 and f"dead letter {first}: replayed" in out, out
    assert await pool.fetchval("SELECT array_agg(event_id) FROM effects") == [refused[0].id]

    code, out = await cli(database, "discard", str(second))
    assert code == 0, out
    assert await consumer.process(pool, refused[1].to_json(), Delivery("test.effects")) is False  # skipped
    code, out = await cli(database, "replay", str(malformed))
    assert code == 1 and "still fails" in out, out

    code, out = await cli(database, "list")
    assert out.strip().splitlines()[0].startswith(f"{malformed}\tparked"), out
    code, out = await cli(database, "list", "--all")
    statuses = [line.split("\t")[1] for line in out.strip().splitlines()]
    assert statuses == ["replayed", "discarded", "parked"], out
    assert await pool.fetchval("SELECT count(*) FROM effects") == 1


# -- the invoicing read model of the issue: an invoice total of 10^19 --------------------------


async def test_an_invoice_total_beyond_int64_parks_only_that_invoice(pool, database):
    await migrate(database, invoicing.migrations)
    invoices = EventStore(STREAM_TOPICS)
    app = Invoicing(pool, invoicing.aggregates)
    customer = (await app.create_customer("ten_a", ev.CustomerFields(name="A")))["id"]
    fields = ev.DraftFields(
        currency="NGN", due_date=date(2030, 1, 1), items=[ev.LineData(description="Plan", quantity=1, unit_amount=1000)]
    )
    await app.create_invoice("ten_a", customer, fields)
    # The poison: an invoice event whose snapshot's total does not fit the bigint column (what
    # invoicing accepted before its API bounds; the store keeps such events forever).
    envelope = await pool.fetchval("SELECT envelope FROM events WHERE event_type = 'invoice.created'")
    snapshot = {**envelope["data"]["invoice"], "id": "inv_poison", "total": 10**19}
    poison = CloudEvent.new(
        type="invoice.created",
        source="/test",
        subject="inv_poison",
        tenant_id="ten_a",
        data={**envelope["data"], "invoice": snapshot},
    )
    async with pool.acquire() as conn, conn.transaction():
        await invoices.append(conn, "invoice", "inv_poison", 0, [poison])
    other = (await app.create_customer("ten_b", ev.CustomerFields(name="B, another tenant")))["id"]
    b_invoice = (await app.create_invoice("ten_b", other, fields))["id"]

    for projection in (InvoiceList(), CustomerList()):
        await caught_up(pool, invoices, projection)
    listed = {r["invoice_id"] for r in await pool.fetch("SELECT invoice_id FROM invoice_list")}
    assert b_invoice in listed and "inv_poison" not in listed and len(listed) == 2
    assert await pool.fetchval("SELECT count(*) FROM customer_list WHERE tenant_id = 'ten_b'") == 1
    row = await pool.fetchrow("SELECT consumer, stream_id, event_id, error FROM dead_letters")
    assert (row["consumer"], row["stream_id"], row["event_id"]) == ("invoice_list", "inv_poison", poison.id)
    assert "int64" in row["error"]
