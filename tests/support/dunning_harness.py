"""Helpers for dunning's integration tests: topics of their own, dunning instances (in-process
with a ManualClock, or as real OS processes), and the invoice and payment events that invoicing
and payments would publish, shaped as docs/events.md says."""

import asyncio
import json
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.auth import hash_key, livemode, tenant_of
from shared.envelope import CloudEvent
from tests.support import processes
from tests.support.processes import json_log_lines

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Topics:
    invoices: str
    payments: str
    dunning: str


async def create_topics(kafka: str) -> Topics:
    suffix = uuid.uuid4().hex[:10]
    topics = Topics(f"test.invoices.{suffix}", f"test.payments.{suffix}", f"test.dunning.{suffix}")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(t, num_partitions=3, replication_factor=1)
                for t in (topics.invoices, topics.payments, topics.dunning)
            ]
        )
    finally:
        await admin.close()
    return topics


def settings_env(database: str, kafka: str, topics: Topics, *, port: int | None = None) -> dict[str, str]:
    """BILLSTREAM_DUNNING_* for a dunning instance of its own (its own consumer groups too)."""
    return {
        "BILLSTREAM_DUNNING_SERVICE_NAME": f"dunning-test-{uuid.uuid4().hex[:8]}",
        "BILLSTREAM_DUNNING_DATABASE_URL": database,
        "BILLSTREAM_DUNNING_KAFKA_BOOTSTRAP": kafka,
        "BILLSTREAM_DUNNING_INVOICES_TOPIC": topics.invoices,
        "BILLSTREAM_DUNNING_PAYMENTS_TOPIC": topics.payments,
        "BILLSTREAM_DUNNING_DUNNING_TOPIC": topics.dunning,
        "BILLSTREAM_DUNNING_TIMER_POLL_INTERVAL_S": "0.1",
        "BILLSTREAM_DUNNING_POLL_INTERVAL_S": "0.2",
        "BILLSTREAM_DUNNING_HTTP_PORT": str(port or free_port()),
        "BILLSTREAM_DUNNING_LOG_JSON": "true",
    }


def free_port() -> int:
    return processes.free_port()  # below the ephemeral range: see there


async def add_api_key(pool: asyncpg.Pool, world_id: str) -> str:
    """A key acting in `world_id` (a tenant id with `_test` for test mode, bare for live), as the
    billing.tenants projection would hold it (invoicing issues real ones)."""
    mode = "live" if livemode(world_id) else "test"
    key = f"sk_{mode}_{uuid.uuid4().hex}"
    await pool.execute(
        """INSERT INTO api_keys (key_id, tenant_id, key_hash, prefix, mode, created_at)
           VALUES ($1, $2, $3, $4, $5, now())""",
        f"key_{uuid.uuid4().hex[:12]}",
        tenant_of(world_id),
        hash_key(key),
        key[:12],
        mode,
    )
    return key


# -- events as invoicing and payments publish them ---------------------------------------------


def invoice_event(
    tenant: str,
    invoice_id: str,
    seq: int,
    type_: str,
    *,
    status: str,
    due: date,
    amount_due: int = 18000,
    auto_collection: bool = True,
    **facts,
) -> CloudEvent:
    snapshot = {
        "id": invoice_id,
        "object": "invoice",
        "status": status,
        "customerId": "cust_1",
        "currency": "UGX",
        "total": 18000,
        "amount": 18000,
        "amountPaid": 18000 - amount_due,
        "amountDue": amount_due,
        "autoCollection": auto_collection,
        "dueDate": due.isoformat(),
    }
    event = CloudEvent.new(
        type=type_,
        source="/billstream/invoicing",
        subject=invoice_id,
        tenant_id=tenant,
        data={**facts, "invoice": snapshot},
    )
    return event.model_copy(update={"sequence": str(seq)})


def payment_event(
    tenant: str, invoice_id: str, type_: str, *, automatic: bool = True, amount: int = 18000, attempt: int = 1
) -> CloudEvent:
    payment_id = f"pay_{uuid.uuid4().hex[:10]}"
    status = "SUCCEEDED" if type_ == "payment.succeeded" else "FAILED"
    data = {
        "paymentId": payment_id,
        "invoiceId": invoice_id,
        "amount": amount,
        "currency": "UGX",
        "payment": {
            "id": payment_id,
            "object": "payment",
            "invoiceId": invoice_id,
            "status": status,
            "amount": amount,
            "currency": "UGX",
        },
    }
    if type_ == "payment.failed":
        data |= {"reasonCode": "card_declined", "reason": "Card declined", "automatic": automatic, "attempt": attempt}
    event = CloudEvent.new(type=type_, source="/billstream/payments", subject=invoice_id, tenant_id=tenant, data=data)
    return event.model_copy(update={"sequence": "1"})


# -- reading billing.dunning ------------------------------------------------------------------


class Tail:
    """Every event on a topic since the start, kept as it arrives."""

    def __init__(self, kafka: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
        )
        self.events: list[dict] = []

    async def __aenter__(self) -> "Tail":
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()

    async def poll(self) -> list[dict]:
        batch = await self.consumer.getmany(timeout_ms=100)
        for records in batch.values():
            self.events.extend(json.loads(r.value) for r in records)
        return self.events

    async def wait_for(self, predicate, *, timeout: float = 30.0) -> list[dict]:
        """Poll until some events match; returns the matches."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = [e for e in await self.poll() if predicate(e)]
            if found:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no matching event within {timeout}s; saw {[e['type'] for e in self.events]}")

    async def catch_up(self, *, timeout: float = 30.0) -> list[dict]:
        """Read up to the topic's current end on every partition: afterwards `events` holds all
        that was on the topic when called (unlike one short poll, which may stop early)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.consumer.assignment():
            await self.poll()
            if loop.time() > deadline:
                raise AssertionError("the tail was never assigned its partitions")
        ends = await self.consumer.end_offsets(list(self.consumer.assignment()))
        while [tp for tp, end in ends.items() if await self.consumer.position(tp) < end]:
            await self.poll()
            if loop.time() > deadline:
                raise AssertionError(f"the tail did not reach the topic's end within {timeout}s")
        return self.events

    def of(self, invoice_id: str, type_: str | None = None) -> list[dict]:
        return [e for e in self.events if e["subject"] == invoice_id and (type_ is None or e["type"] == type_)]


# -- dunning as an OS process -----------------------------------------------------------------


class DunningProcess:
    """`python -m services.dunning` with its own settings, logging to a file; killable like a crash."""

    def __init__(self, env: dict[str, str], log_path: Path, *, failpoints: str = "") -> None:
        self.env, self.log_path, self.failpoints = env, log_path, failpoints
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['BILLSTREAM_DUNNING_HTTP_PORT']}"

    async def start(self) -> "DunningProcess":
        env = {**os.environ, **self.env, "BILLSTREAM_FAILPOINTS": self.failpoints, "PYTHONPATH": str(ROOT)}
        with open(self.log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.dunning",
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        return self

    def log_lines(self) -> list[dict]:
        return json_log_lines(self.log_path)

    def started(self) -> bool:
        return any(line.get("event") == "service started" for line in self.log_lines())

    async def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
        if self.proc:
            await self.proc.wait()


def as_utc(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- dunning in this process, on a ManualClock -------------------------------------------------


@dataclass
class InProcess:
    """A started dunning instance on its own database and topics, its clock moved by the test."""

    dunning: object  # services.dunning.service.DunningService
    clock: object  # ManualClock
    topics: Topics
    kafka: str
    tail: Tail

    @property
    def pool(self) -> asyncpg.Pool:
        return self.dunning.service.pool

    async def publish(self, topic: str, *events: CloudEvent) -> None:
        from tests.support.kafka import produce

        await produce(self.kafka, topic, list(events))

    async def invoices(self, *events: CloudEvent) -> None:
        await self.publish(self.topics.invoices, *events)

    async def payments(self, *events: CloudEvent) -> None:
        await self.publish(self.topics.payments, *events)

    async def handled(self, event: CloudEvent, consumer: str) -> bool:
        """True once this instance's consumer `invoices`/`payments` has committed the event."""
        name = f"{self.dunning.service.name}.{consumer}"
        return bool(
            await self.pool.fetchval("SELECT true FROM inbox WHERE consumer = $1 AND event_id = $2", name, event.id)
        )

    async def settled(self) -> int:
        """Wait until no timer is being fired (the engine holds the invoice's row while it fires
        one, so locking every row waits that out); returns how many timers have fired."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM invoice_schedule FOR UPDATE")
            return await conn.fetchval("SELECT count(*) FROM timers WHERE fired_at IS NOT NULL")

    async def published(self) -> list[dict]:
        """Everything this instance has committed so far, read back from its topic: waits for
        the relay to empty the outbox, then for the tail to reach the topic's end."""
        from tests.conftest import eventually

        await self.settled()
        await eventually(lambda: self.pool.fetchval("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL"))
        return await self.tail.catch_up()

    async def pending(self, invoice_id: str) -> dict[str, datetime]:
        rows = await self.pool.fetch(
            "SELECT key, fire_at FROM timers WHERE invoice_id = $1 AND fired_at IS NULL AND cancelled_at IS NULL",
            invoice_id,
        )
        return {r["key"]: r["fire_at"] for r in rows}


async def start_in_process(database: str, kafka: str, start: datetime) -> InProcess:
    from services.dunning.app.clock import ManualClock
    from services.dunning.service import build
    from services.dunning.settings import Settings

    topics = await create_topics(kafka)
    env = settings_env(database, kafka, topics)
    settings = Settings(**{k.removeprefix("BILLSTREAM_DUNNING_").lower(): v for k, v in env.items()})
    clock = ManualClock(start)
    dunning = build(settings, clock)
    await dunning.service.start()
    tail = Tail(kafka, topics.dunning)
    await tail.__aenter__()
    return InProcess(dunning, clock, topics, kafka, tail)


async def stop_in_process(running: InProcess) -> None:
    await running.tail.__aexit__()
    await running.dunning.service.stop()
