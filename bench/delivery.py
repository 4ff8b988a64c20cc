"""(4) Outbox → Kafka and event → webhook on the running stack: invoices created through :3000
at a steady rate for a bench tenant with a webhook endpoint on a local receiver
(deploy/local/receiver.py). From each event's time (set when the command decided, just before
its commit):
  - publish lag: to the Kafka record's CreateTime (when the outbox relay handed it to the producer);
  - to readable on Kafka: until a tail consumer here receives it;
  - to webhook received: until the receiver has verified its signature.
Baselines: Kafka's ProducerPerformance at the same rate and record size (send → acknowledged) and
EndToEndLatency (produce → consumed)."""

import asyncio
import json
import math
import queue
import statistics
import time
from datetime import datetime

from bench.kafka_tools import ScratchTopic, end_to_end_latency, producer_performance
from bench.loadgen import open_loop
from bench.report import Row, progress
from bench.stats import latency_summary, median_of_runs
from bench.tenants import bench_tenant
from deploy.local.demo import EventTail
from deploy.local.receiver import WebhookReceiver

TARGET_WEBHOOK_P99_MS = 1000.0


class TimedQueue(queue.Queue):
    """The receiver's queue, stamping when each webhook arrived (wall clock, as event times are)."""

    def put(self, item, block=True, timeout=None):
        super().put((time.time(), item), block, timeout)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _register_endpoint(tenant, url: str, timeout: float = 30) -> dict | None:
    """The bench tenant's endpoint for invoice.created; None (Kafka figures only) if the webhooks
    service does not accept it in time, say because it is down."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = await tenant.http.request(
            "POST", "/api/webhook-endpoints", {"url": url, "enabledEvents": ["invoice.created"]}
        )
        if status == 201:
            return json.loads(body)
        await asyncio.sleep(0.5)  # 401 until the key reaches the webhooks service
    progress("delivery", f"[yellow]no webhook endpoint (last answer {status} {body[:100]!r}): measuring Kafka only[/]")
    return None


async def _one_run(tenant, receiver, tail, rate: float, seconds: float) -> tuple[dict, dict, dict, int]:
    kafka: dict[str, tuple[float, float, int]] = {}  # invoice id → publish lag, readable lag, size
    hooks: dict[str, float] = {}  # invoice id → webhook lag
    loaded = asyncio.Event()
    ids: set[str] = set()

    async def collect() -> None:
        """Read Kafka and the receiver while the load runs, until every invoice is seen."""
        deadline = None
        while True:
            for records in (await tail.consumer.getmany(timeout_ms=20)).values():
                now = time.time()
                for r in records:
                    event = json.loads(r.value)
                    if event.get("type") == "invoice.created" and event.get("tenantid") == tenant.tenant_id:
                        at = _ts(event["time"])
                        kafka[event["subject"]] = (r.timestamp / 1000 - at, now - at, len(r.value))
            while True:
                try:
                    arrived, hook = receiver.received.get_nowait()
                except queue.Empty:
                    break
                payload = hook.payload or {}
                if hook.verified and payload.get("type") == "invoice.created":
                    hooks[payload["data"]["invoice"]["id"]] = arrived - _ts(payload["createdAt"])
            if loaded.is_set():
                deadline = deadline or time.monotonic() + 60
                if (
                    ids <= kafka.keys() and (not receiver.secret or ids <= hooks.keys())
                ) or time.monotonic() > deadline:
                    return

    collector = asyncio.create_task(collect())
    result = await open_loop(
        lambda: tenant.http.request("POST", "/api/invoices", tenant.invoice_body()),
        rate,
        seconds,
        ok=lambda s: s == 201,
        keep_bodies=True,
    )
    ids.update(json.loads(b)["id"] for b in result.bodies)
    loaded.set()
    await collector
    missing_kafka, missing_hooks = ids - kafka.keys(), (ids - hooks.keys()) if receiver.secret else set()
    if missing_kafka or missing_hooks:
        progress(
            "delivery",
            f"[yellow]{len(missing_kafka)} events not seen on Kafka, {len(missing_hooks)} "
            "webhooks not received within 60 s[/]",
        )
    seen = [kafka[i] for i in ids if i in kafka]
    size = int(statistics.mean(x[2] for x in seen)) if seen else 1000
    return (
        latency_summary([x[0] for x in seen]),
        latency_summary([x[1] for x in seen]),
        latency_summary([hooks[i] for i in ids if i in hooks]),
        size,
    )


async def run(quick: bool, runs: int) -> list[Row]:
    rate, seconds = (10, 3.0) if quick else (20, 15.0)
    tenant = await bench_tenant("delivery")
    publish_runs, readable_runs, hook_runs, perf_runs, e2e_runs = [], [], [], [], []
    with WebhookReceiver() as receiver:
        receiver.received = TimedQueue()
        endpoint = await _register_endpoint(tenant, receiver.url)
        receiver.secret = endpoint and endpoint["secret"]
        try:
            async with EventTail() as tail:
                for i in range(runs):
                    progress("delivery", f"{rate} invoices/s for {seconds:g} s: run {i + 1}/{runs}")
                    p, r, h, size = await _one_run(tenant, receiver, tail, rate, seconds)
                    publish_runs.append(p)
                    readable_runs.append(r)
                    hook_runs.append(h)
            async with ScratchTopic() as topic:
                for i in range(runs):
                    progress("delivery", f"Kafka ProducerPerformance and EndToEndLatency: run {i + 1}/{runs}")
                    perf_runs.append(await producer_performance(topic, int(rate * seconds), size, rate))
                    e2e_runs.append(await end_to_end_latency(topic, 200 if quick else 1000, size))
        finally:
            if endpoint:
                await tenant.http.request("DELETE", f"/api/webhook-endpoints/{endpoint['id']}")
            await tenant.http.close()
    p, r, h = median_of_runs(publish_runs), median_of_runs(readable_runs), median_of_runs(hook_runs)
    perf, e2e = median_of_runs(perf_runs), median_of_runs(e2e_runs)
    producer = f"ProducerPerformance at {rate}/s"
    return [
        Row("delivery", f"outbox publish lag p50 at {rate}/s", p["p50"], "ms", perf["p50"], producer),
        Row("delivery", f"outbox publish lag p99 at {rate}/s", p["p99"], "ms", perf["p99"], producer),
        Row("delivery", "event → readable on Kafka p50", r["p50"], "ms", e2e["p50"], "EndToEndLatency"),
        Row("delivery", "event → readable on Kafka p99", r["p99"], "ms", e2e["p99"], "EndToEndLatency"),
        Row("delivery", "event → webhook received p50", h["p50"], "ms", e2e["p50"], "EndToEndLatency"),
        Row(
            "delivery",
            "event → webhook received p99",
            h["p99"],
            "ms",
            e2e["p99"],
            "EndToEndLatency",
            "≤ 1 s",
            None if math.isnan(h["p99"]) else h["p99"] <= TARGET_WEBHOOK_P99_MS,
        ),
    ]
