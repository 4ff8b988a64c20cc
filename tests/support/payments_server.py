"""A real payments process for integration tests: its own database (the `database` fixture),
its own Kafka topics and HTTP port, so it never touches the running stack's service."""

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.auth import generate_key, hash_key, tenant_of, world
from shared.envelope import CloudEvent
from shared.ids import new_id
from tests.support import processes
from tests.support.kafka import produce

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    return processes.free_port()  # below the ephemeral range: see there


async def create_topics(kafka: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=3, replication_factor=1) for n in names])
    finally:
        await admin.close()


@dataclass
class PaymentsServer:
    url: str
    dsn: str
    kafka: str
    topics: dict[str, str]
    proc: asyncio.subprocess.Process
    log_path: Path
    run: str = ""
    sequences: dict[str, int] = field(default_factory=dict)

    async def tenant(self, name: str = "Acme Ltd", mode: str = "test") -> tuple[str, httpx.AsyncClient]:
        """A tenant and an API client with a `mode` key (rows as billing.tenants would project
        them): the id of that mode's world, which the tenant's invoice events there carry, and the client."""
        tenant_id = new_id("ten")
        await self.fetch("INSERT INTO tenants VALUES ($1, $2, now())", tenant_id, name)
        return world(tenant_id, mode), await self.client(tenant_id, mode)

    async def client(self, world_id: str, mode: str) -> httpx.AsyncClient:
        """An API client with a new `mode` key of the tenant that `world_id` (either of its worlds) belongs to."""
        key = generate_key(mode)
        await self.fetch(
            """INSERT INTO api_keys (key_id, tenant_id, key_hash, prefix, mode, created_at)
               VALUES ($1, $2, $3, $4, $5, now())""",
            new_id("key"),
            tenant_of(world_id),
            hash_key(key),
            key[:12],
            mode,
        )
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=20)

    async def publish_invoice(self, tenant_id: str, event_type: str, invoice: dict, **facts) -> CloudEvent:
        """Publish an invoicing event the way docs/events.md describes it (snapshot in data.invoice)."""
        seq = self.sequences.get(invoice["id"], 0) + 1
        self.sequences[invoice["id"]] = seq
        event = CloudEvent.new(
            type=event_type,
            source="/billstream/invoicing",
            subject=invoice["id"],
            tenant_id=tenant_id,
            data={**facts, "invoice": invoice},
        ).model_copy(update={"sequence": str(seq)})
        await produce(self.kafka, self.topics["invoices"], [event])
        return event

    async def publish_dunning(self, tenant_id: str, event_type: str, invoice_id: str, **facts) -> CloudEvent:
        event = CloudEvent.new(
            type=event_type,
            source="/billstream/dunning",
            subject=invoice_id,
            tenant_id=tenant_id,
            data={"invoiceId": invoice_id, **facts},
        )
        await produce(self.kafka, self.topics["dunning"], [event])
        return event

    async def fetch(self, sql: str, *args):
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()


def invoice(
    invoice_id: str | None = None,
    *,
    status: str = "PENDING",
    total: int = 180000,
    paid: int = 0,
    currency: str = "UGX",
    customer_id: str = "cust_1",
    allow_partial: bool = False,
    auto_collection: bool = False,
    return_url: str | None = None,
) -> dict:
    """An invoice snapshot as invoicing publishes it."""
    invoice_id = invoice_id or new_id("inv")
    return {
        "id": invoice_id,
        "object": "invoice",
        "number": "INV-2026-000123",
        "status": status,
        "customerId": customer_id,
        "customer": {"id": customer_id, "name": "Nakato Grace", "email": "grace@example.com"},
        "currency": currency,
        "items": [{"description": "Pro Plan - Monthly", "quantity": 1, "unitAmount": total, "amount": total}],
        "subtotal": total,
        "discountTotal": 0,
        "taxTotal": 0,
        "total": total,
        "amount": total,
        "amountPaid": paid,
        "amountDue": total - paid,
        "amountRefunded": 0,
        "creditsApplied": 0,
        "writeOffAmount": 0,
        "allowPartialPayments": allow_partial,
        "autoCollection": auto_collection,
        "dueDate": "2026-12-31",
        "returnUrl": return_url,
        "metadata": {},
        "createdAt": datetime.now(UTC).isoformat(),
        "updatedAt": datetime.now(UTC).isoformat(),
    }


async def start_payments_server(
    database: str, kafka: str, *, run: str | None = None, failpoints: str = "", port: int | None = None, **env: str
) -> PaymentsServer:
    """A new payments process; with the `run` of an earlier one, that process restarted (same
    topics and consumer groups). Pass the old `port` too when the restart must keep its URL, as a
    real restart does: provider callbacks and charge requests carry it."""
    restart = run is not None
    run = run or uuid.uuid4().hex[:10]
    topics = {name: f"test.{name}.{run}" for name in ("invoices", "dunning", "payments")}
    if not restart:
        await create_topics(kafka, *topics.values())
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    settings = {
        "DATABASE_URL": database,
        "KAFKA_BOOTSTRAP": kafka,
        "HTTP_PORT": str(port),
        "SERVICE_NAME": f"payments-test-{run}",
        "INVOICES_TOPIC": topics["invoices"],
        "DUNNING_TOPIC": topics["dunning"],
        "PAYMENTS_TOPIC": topics["payments"],
        "PUBLIC_URL": url,
        "LOG_JSON": "true",
        "POLL_INTERVAL_S": "0.2",
        "SANDBOX_DELAY_S": "0.3",
        "SANDBOX_SLOW_S": "3",
        "PROVIDER_TIMEOUT_S": "1",
        **env,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"payments-{run}.log"
    process_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BILLSTREAM_FAILPOINTS": failpoints,
        **{f"BILLSTREAM_PAYMENTS_{k}": v for k, v in settings.items()},
    }
    with open(log_path, "ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.payments",
            env=process_env,
            cwd=ROOT,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    server = PaymentsServer(url, database, kafka, topics, proc, log_path, run=run)
    deadline = asyncio.get_running_loop().time() + 60
    async with httpx.AsyncClient() as client:
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"payments exited: {log_path.read_text()[-3000:]}")
            try:
                if (await client.get(f"{url}/ready", timeout=2)).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                await stop_payments_server(server)
                raise RuntimeError(f"payments did not get ready: {log_path.read_text()[-3000:]}")
            await asyncio.sleep(0.2)


async def stop_payments_server(server: PaymentsServer) -> None:
    if server.proc.returncode is None:
        server.proc.terminate()
        try:
            await asyncio.wait_for(server.proc.wait(), 10)
        except TimeoutError:
            server.proc.kill()
            await server.proc.wait()


import pytest  # noqa: E402


@pytest.fixture
async def payments_server(database, kafka):
    """Import into a test module to get a running payments process of its own."""
    server = await start_payments_server(database, kafka)
    try:
        yield server
    finally:
        await stop_payments_server(server)
