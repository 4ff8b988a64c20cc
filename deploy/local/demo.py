"""The `make run` demo: a tenant and key, a webhook endpoint on a local receiver, an invoice
created through the :3000 gateway, its event read back from Kafka, and the signed webhook.

    python -m deploy.local.demo            (the stack must be running: make up)
"""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer
from rich.console import Console

from deploy.local.receiver import Received, WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = os.environ.get("BILLSTREAM_GATEWAY_URL", "http://localhost:3000")
KAFKA = os.environ.get("BILLSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:59092")
console = Console(highlight=False, soft_wrap=True)


@dataclass
class DemoResult:
    tenant_id: str
    api_key: str
    invoice: dict
    kafka_event: dict
    kafka_partition: int
    kafka_offset: int
    webhook: Received
    correlation_id: str


def create_tenant(name: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "services.invoicing", "tenants", "create", "--name", name, "--json"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def wait_until_key_active(client: httpx.Client, timeout: float = 30.0) -> None:
    """Keys reach each service through billing.tenants; wait until every service knows it."""
    deadline = time.monotonic() + timeout
    for path in ("/api/invoices", "/api/webhook-endpoints"):
        while client.get(path).status_code == 401:
            if time.monotonic() > deadline:
                raise TimeoutError(f"API key not active for {path}")
            time.sleep(0.2)


class EventTail:
    """Reads billing.invoices from its current end, to find the event a request causes."""

    def __init__(self, topic: str = "billing.invoices") -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, group_id=None, enable_auto_commit=False)

    async def __aenter__(self) -> "EventTail":
        await self.consumer.start()
        deadline = asyncio.get_running_loop().time() + 10
        while not (tps := self.consumer.assignment()):  # all partitions, once metadata is in
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"topic {self.topic} not found on {KAFKA}")
            await asyncio.sleep(0.05)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before the event is produced
            await self.consumer.position(tp)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()

    async def find(self, subject: str, timeout: float = 20.0):
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for records in (await self.consumer.getmany(timeout_ms=300)).values():
                for r in records:
                    event = json.loads(r.value)
                    if event.get("subject") == subject:
                        return r, event
        raise TimeoutError(f"no event for {subject} on {self.topic}")


async def run_demo(quiet: bool = False) -> DemoResult:
    say = (lambda *a: None) if quiet else console.print
    say(f"[bold]Billstream demo[/] against {GATEWAY}\n")

    tenant = create_tenant("Demo Shop")
    say(f"1. Created tenant [cyan]{tenant['tenantId']}[/] with API key [cyan]{tenant['apiKey'][:16]}…[/]")
    headers = {"Authorization": f"Bearer {tenant['apiKey']}"}
    with httpx.Client(base_url=GATEWAY, headers=headers, timeout=10) as client, WebhookReceiver() as receiver:
        wait_until_key_active(client)
        say("   the key reached every service through the billing.tenants topic")

        r = client.post("/api/webhook-endpoints", json={"url": receiver.url, "enabledEvents": ["invoice.*"]})
        r.raise_for_status()
        endpoint = r.json()
        receiver.secret = endpoint["secret"]
        say(f"2. Registered webhook endpoint [cyan]{endpoint['id']}[/] → {receiver.url}")

        r = client.post("/api/customers", json={"name": "Jane Buyer", "email": "jane@example.com", "currency": "UGX"})
        r.raise_for_status()
        customer = r.json()
        say(f"3. Created customer [cyan]{customer['id']}[/] {customer['name']} <{customer['email']}>")

        correlation_id = f"demo-{uuid.uuid4().hex[:8]}"
        async with EventTail() as tail:
            r = client.post(
                "/api/invoices",
                headers={"X-Correlation-Id": correlation_id},
                json={
                    "customerId": customer["id"],
                    "dueDate": (datetime.now(UTC) + timedelta(days=30)).date().isoformat(),
                    "items": [
                        {"description": "Pro Plan - Monthly", "quantity": 1, "unitAmount": 180000},
                        {"description": "Extra seats", "quantity": 3, "unitAmount": 25000},
                    ],
                },
            )
            r.raise_for_status()
            invoice = r.json()
            say(
                f"4. POST /api/invoices → [green]{r.status_code}[/] invoice [cyan]{invoice['id']}[/] "
                f"{invoice['status']} {invoice['currency']} {invoice['total']} (correlation {correlation_id})"
            )
            record, event = await tail.find(invoice["id"])
        say(
            f"5. Kafka [cyan]{record.topic}[/] partition {record.partition} offset {record.offset}: "
            f"[bold]{event['type']}[/] id={event['id']} correlationid={event['correlationid']}"
        )

        webhook = await asyncio.to_thread(
            receiver.wait_for, lambda w: (w.payload or {}).get("data", {}).get("invoice", {}).get("id") == invoice["id"]
        )
        status = "[green]signature verified[/]" if webhook.verified else "[red]signature INVALID[/]"
        say(f"6. Webhook received: {webhook.payload['type']} webhook-id={webhook.headers['webhook-id']} {status}")

        listed = client.get("/api/invoices", params={"limit": 5}).json()
        say(f"7. GET /api/invoices → {listed['meta']['total']} invoice(s) in the read model")
    say("\nDone. Try it yourself:")
    say(f"   curl -H 'Authorization: Bearer {tenant['apiKey']}' {GATEWAY}/api/invoices")
    return DemoResult(
        tenant["tenantId"], tenant["apiKey"], invoice, event, record.partition, record.offset, webhook, correlation_id
    )


if __name__ == "__main__":
    try:
        result = asyncio.run(run_demo())
    except Exception as exc:  # noqa: BLE001 - a demo that fails should say what failed, not dump a trace
        console.print(f"[red]demo failed:[/] {exc!r}\nlogs: .local/logs/")
        sys.exit(1)
    sys.exit(0 if result.webhook.verified else 1)
