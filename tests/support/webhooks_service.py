"""The real webhooks service (`python -m services.webhooks`) in its own process, on its own
database, Kafka topics and consumer groups, so a test can talk to its API, feed it events and
kill it like a crash would."""

import asyncio
import json
import os
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.auth import generate_key, hash_key, world
from shared.envelope import CloudEvent
from tests.support import processes
from tests.support.kafka import produce
from tests.support.processes import json_log_lines

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    return processes.free_port()  # below the ephemeral range: see there


async def create_topics(bootstrap: str, names: list[str], partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    finally:
        await admin.close()


async def add_tenant(dsn: str, name: str) -> tuple[str, str]:
    """A tenant and a test key, written straight into the service's projection of billing.tenants:
    (the test world's id, the key)."""
    tenant_id, key = f"ten_{uuid.uuid4().hex[:12]}", generate_key("test")
    conn = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        await conn.execute(
            "INSERT INTO tenants (tenant_id, name, created_at) VALUES ($1, $2, $3)", tenant_id, name, now
        )
        await conn.execute(
            """INSERT INTO api_keys (key_id, tenant_id, key_hash, prefix, mode, created_at)
               VALUES ($1, $2, $3, $4, 'test', $5)""",
            f"key_{uuid.uuid4().hex[:12]}",
            tenant_id,
            hash_key(key),
            key[:12],
            now,
        )
    finally:
        await conn.close()
    return world(tenant_id, "test"), key


class WebhooksProcess:
    def __init__(self, dsn: str, kafka: str, log_dir: Path, **settings: Any) -> None:
        tag = uuid.uuid4().hex[:8]
        self.dsn, self.kafka, self.log_path = dsn, kafka, log_dir / f"webhooks-{tag}.log"
        self.topics = {name: f"test.{name}.{tag}" for name in ("invoices", "payments", "dunning")}
        self.events_topic = f"test.webhooks.{tag}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            "SERVICE_NAME": f"webhooks-test-{tag}",
            "DATABASE_URL": dsn,
            "KAFKA_BOOTSTRAP": kafka,
            "HTTP_PORT": str(self.port),
            "PUBLIC_TOPICS": json.dumps(list(self.topics.values())),
            "EVENTS_TOPIC": self.events_topic,
            "ALLOW_PRIVATE_URLS": "true",
            "POLL_INTERVAL_S": "0.2",
            "LOG_JSON": "true",
            "EMAILS_ENABLED": "false",
        }
        for key, value in settings.items():
            env[key.upper()] = json.dumps(value) if isinstance(value, list) else str(value)
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **{f"BILLSTREAM_WEBHOOKS_{k}": v for k, v in env.items()}}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> "WebhooksProcess":
        if not hasattr(self, "_topics_made"):
            await create_topics(self.kafka, [*self.topics.values(), self.events_topic])
            self._topics_made = True
        with open(self.log_path, "ab") as log:  # a file, not a pipe: a full pipe would block the service
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.webhooks",
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        deadline = asyncio.get_running_loop().time() + 60
        async with httpx.AsyncClient() as client:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"webhooks exited: {self.log_path.read_text()[-3000:]}")
                try:
                    if (await client.get(f"{self.url}/ready", timeout=2)).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"webhooks not ready: {self.log_path.read_text()[-3000:]}")
                await asyncio.sleep(0.2)

    async def kill(self) -> None:
        """kill -9: no cleanup, as a crash."""
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                await self.kill()

    def client(self, api_key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10)

    async def publish(self, topic: str, *events: CloudEvent) -> None:
        await produce(self.kafka, self.topics[topic], list(events))

    def log_lines(self) -> list[dict]:
        return json_log_lines(self.log_path)


@pytest.fixture
async def start_webhooks(database, kafka, tmp_path):
    """start_webhooks(**settings) → a running WebhooksProcess on the test database."""
    procs: list[WebhooksProcess] = []

    async def start(**settings: Any) -> WebhooksProcess:
        proc = WebhooksProcess(database, kafka, tmp_path, **settings)
        procs.append(proc)
        return await proc.start()

    yield start
    for proc in procs:
        await proc.stop()
