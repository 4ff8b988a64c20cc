"""(4b) Dead endpoints must not delay a healthy one: event → webhook received for a healthy
endpoint at 100 invoices/s through :3000, with three dead endpoints of the same tenant subscribed
to the same events and holding a backlog of 33,000 due deliveries (seeded into the running
webhooks database, as the incident had). The dead ones:
  - refusing connections (a port bound but not listening);
  - black-holing (a listener that never accepts, its one-slot queue kept full: connects hang);
  - answering 500 after 5 s.
Also from the delivery log: the healthy endpoint's delivery row written → attempted, the delivery
worker's share of the lag (the rest is invoicing, Kafka and the webhooks consumer).
Baseline: the same load with the healthy endpoint alone, measured first in the same run."""

import json
import math
import queue
import socket
import threading
import time
import uuid
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg

from bench.delivery import TARGET_WEBHOOK_P99_MS, TimedQueue, _register_endpoint, _ts
from bench.env import dsn_for
from bench.loadgen import open_loop
from bench.report import Row, progress
from bench.stats import latency_summary, median_of_runs
from bench.tenants import bench_tenant
from deploy.local.receiver import WebhookReceiver

BACKLOG = 11_000  # per dead endpoint

SEED = """
INSERT INTO webhook_deliveries (delivery_id, tenant_id, endpoint_id, event_id, event_type, payload, next_attempt_at)
SELECT $1 || e.i || '_' || g, $2, e.id, 'evt_lanes_' || g, 'invoice.created', '{}',
       now() - make_interval(secs => g)  -- due, and older than anything the load makes
  FROM unnest($3::text[]) WITH ORDINALITY AS e(id, i), generate_series(1, $4::int) AS g
"""


class Slow500(ThreadingHTTPServer):
    """Answers every request with a 500, 5 s after reading it."""

    daemon_threads = True

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                self.rfile.read(int(self.headers.get("content-length", 0)))
                time.sleep(5)
                self.send_response(500)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def __exit__(self, *exc) -> None:
        self.shutdown()
        super().__exit__(*exc)


def _refusing(stack: ExitStack) -> str:
    sock = stack.enter_context(socket.socket())
    sock.bind(("127.0.0.1", 0))  # bound, never listening: the port stays ours and refuses
    return f"http://127.0.0.1:{sock.getsockname()[1]}/refused"


def _black_hole(stack: ExitStack) -> str:
    sock = stack.enter_context(socket.socket())
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)  # never accepted; our own connection fills the queue, so later SYNs are dropped
    stack.enter_context(socket.create_connection(sock.getsockname()))
    return f"http://127.0.0.1:{sock.getsockname()[1]}/black-hole"


async def _one_run(tenant, receiver, db, endpoint_id: str, rate: float, seconds: float) -> dict:
    started = await db.fetchval("SELECT now()")
    result = await open_loop(
        lambda: tenant.http.request("POST", "/api/invoices", tenant.invoice_body()),
        rate,
        seconds,
        ok=lambda s: s == 201,
        keep_bodies=True,
    )
    ids = {json.loads(b)["id"] for b in result.bodies}
    lags: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while not ids <= lags.keys() and time.monotonic() < deadline:
        try:
            arrived, hook = receiver.received.get(timeout=0.2)  # stamped on arrival: reading late is fine
        except queue.Empty:
            continue
        payload = hook.payload or {}
        if hook.verified and payload.get("type") == "invoice.created":
            lags[payload["data"]["invoice"]["id"]] = arrived - _ts(payload["createdAt"])
    if missing := ids - lags.keys():
        progress("lanes", f"[yellow]{len(missing)} webhooks not received within 60 s[/]")
    queued = await db.fetch(
        """SELECT extract(epoch FROM a.attempted_at - d.created_at)::float8 AS lag
             FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.delivery_id AND a.attempt = 1
            WHERE d.endpoint_id = $1 AND d.created_at >= $2""",
        endpoint_id,
        started,
    )
    return {
        **latency_summary([lags[i] for i in ids if i in lags]),
        **{f"queued {k}": v for k, v in latency_summary([r["lag"] for r in queued]).items()},
    }


async def run(quick: bool, runs: int) -> list[Row]:
    rate, seconds = (100, 3.0) if quick else (100, 10.0)
    backlog = 1_000 if quick else BACKLOG
    tenant = await bench_tenant("lanes")
    db = await asyncpg.connect(dsn_for("billstream_webhooks"))
    healthy, dead = None, []
    with ExitStack() as stack, WebhookReceiver() as receiver:
        receiver.received = TimedQueue()
        try:
            healthy = await _register_endpoint(tenant, receiver.url)
            if healthy is None:
                raise RuntimeError("the webhooks service does not accept endpoints")
            receiver.secret = healthy["secret"]
            alone = []
            for i in range(runs):
                progress("lanes", f"healthy endpoint alone, {rate}/s for {seconds:g} s: run {i + 1}/{runs}")
                alone.append(await _one_run(tenant, receiver, db, healthy["id"], rate, seconds))
            slow = stack.enter_context(Slow500())
            for url in (_refusing(stack), _black_hole(stack), f"http://127.0.0.1:{slow.server_address[1]}/slow"):
                dead.append(await _register_endpoint(tenant, url))
            await db.execute(
                SEED, f"whd_lanes{uuid.uuid4().hex[:8]}_", tenant.tenant_id, [d["id"] for d in dead], backlog
            )
            await db.execute("ANALYZE webhook_deliveries")
            with_dead = []
            for i in range(runs):
                progress(
                    "lanes",
                    f"with 3 dead endpoints ({3 * backlog:,} due for them), {rate}/s for "
                    f"{seconds:g} s: run {i + 1}/{runs}",
                )
                with_dead.append(await _one_run(tenant, receiver, db, healthy["id"], rate, seconds))
            attempts = await db.fetchval(
                "SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d USING (delivery_id) "
                "WHERE d.endpoint_id = ANY($1::text[])",
                [d["id"] for d in dead],
            )
            progress("lanes", f"the dead endpoints were attempted {attempts} times in all")
        finally:
            for endpoint in [e for e in (healthy, *dead) if e]:
                await tenant.http.request("DELETE", f"/api/webhook-endpoints/{endpoint['id']}")
            # What was never attempted goes; the few attempted ones the worker fails as deleted.
            removed = await db.execute(
                """DELETE FROM webhook_deliveries WHERE endpoint_id = ANY($1::text[]) AND status = 'pending'
                      AND attempts = 0 AND next_attempt_at <= now()""",
                [d["id"] for d in dead],
            )
            progress("lanes", f"removed the dead endpoints' unattempted deliveries ({removed})")
            await db.close()
            await tenant.http.close()
    a, d = median_of_runs(alone), median_of_runs(with_dead)
    what = "healthy endpoint alone"
    return [
        Row("lanes", f"healthy event → webhook p50 at {rate}/s, 3 dead endpoints", d["p50"], "ms", a["p50"], what),
        Row(
            "lanes",
            f"healthy event → webhook p99 at {rate}/s, 3 dead endpoints",
            d["p99"],
            "ms",
            a["p99"],
            what,
            "≤ 1 s",
            None if math.isnan(d["p99"]) else d["p99"] <= TARGET_WEBHOOK_P99_MS,
        ),
        Row(
            "lanes",
            "healthy delivery queued → attempted p99, 3 dead endpoints",
            d["queued p99"],
            "ms",
            a["queued p99"],
            what,
        ),
    ]
