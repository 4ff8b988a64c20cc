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
import queue
import statistics
import time
from datetime import datetime

from deploy.local.demo import EventTail
from deploy.local.receiver import WebhookReceiver

from bench.kafka_tools import ScratchTopic, end_to_end_latency, producer_performance
from bench.loadgen import open_loop
from bench.report import Row, progress
from bench.stats import latency_summary, median_of_runs
from bench.tenants import bench_tenant

TARGET_WEBHOOK_P99_MS = 1000.0


class TimedQueue(queue.Queue):
    """The receiver's queue, stamping when each webhook arrived (wall clock, as event times are)."""

    def put(self, item, block=True, timeout=None):
        super().put((time.time(), item), block, timeout)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _one_run(tenant, receiver, tail, rate: float, seconds: float) -> tuple[dict, dict, dict, int]:
    result = await open_loop(lambda: tenant.http.request("POST", "/api/invoices", tenant.invoice_body()),
                             rate, seconds, ok=lambda s: s == 201, keep_bodies=True)
    ids = {json.loads(b)["id"] for b in result.bodies}
    publish, readable, hooks, sizes = [], [], [], []
    deadline = time.monotonic() + 60
    kafka_left, hooks_left = set(ids), set(ids)
    while (kafka_left or hooks_left) and time.monotonic() < deadline:
        for records in (await tail.consumer.getmany(timeout_ms=100)).values():
            now = time.time()
            for r in records:
                event = json.loads(r.value)
                if event.get("type") == "invoice.created" and event.get("subject") in kafka_left:
                    kafka_left.discard(event["subject"])
                    publish.append(r.timestamp / 1000 - _ts(event["time"]))
                    readable.append(now - _ts(event["time"]))
                    sizes.append(len(r.value))
        while True:
            try:
                arrived, hook = receiver.received.get_nowait()
            except queue.Empty:
                break
            payload = hook.payload or {}
            invoice_id = payload.get("data", {}).get("invoice", {}).get("id")
            if hook.verified and payload.get("type") == "invoice.created" and invoice_id in hooks_left:
                hooks_left.discard(invoice_id)
                hooks.append(arrived - _ts(payload["createdAt"]))
    if kafka_left or hooks_left:
        progress("delivery", f"[yellow]{len(kafka_left)} events not seen on Kafka, {len(hooks_left)} webhooks "
                             f"not received within 60 s[/]")
    size = int(statistics.mean(sizes)) if sizes else 1000
    return latency_summary(publish), latency_summary(readable), latency_summary(hooks), size


async def run(quick: bool, runs: int) -> list[Row]:
    rate, seconds = (10, 3.0) if quick else (20, 15.0)
    tenant = await bench_tenant("delivery", ("/api/invoices", "/api/webhook-endpoints"))
    publish_runs, readable_runs, hook_runs, perf_runs, e2e_runs = [], [], [], [], []
    with WebhookReceiver() as receiver:
        receiver.received = TimedQueue()
        status, body = await tenant.http.request("POST", "/api/webhook-endpoints",
                                                 {"url": receiver.url, "enabledEvents": ["invoice.created"]})
        if status != 201:
            raise RuntimeError(f"POST /api/webhook-endpoints → {status} {body[:200]!r}")
        endpoint = json.loads(body)
        receiver.secret = endpoint["secret"]
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
        Row("delivery", "event → webhook received p99", h["p99"], "ms", e2e["p99"], "EndToEndLatency",
            "≤ 1 s", h["p99"] <= TARGET_WEBHOOK_P99_MS),
    ]
