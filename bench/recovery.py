"""(recovery) How soon every consumer has caught up after a fault, on a stack of its own.

It starts the chaos suite's isolated stack (tests/chaos/stack.py) in `.local/recovery` with ports
shifted by 1000 (PostgreSQL 26432, Kafka 30092, gateway 4100, services 9101-9104), so neither the
default stack nor a chaos run is touched, drives steady traffic through its gateway (an invoice
created and finalized every 1/RATE s), and injects, one after the other:
  - kill -9 of a service (SERVICE), restarted with `services.sh start` as the chaos run does;
  - kill -9 of Kafka, restarted with `kafka.sh start`;
  - kill -9 of Kafka, restarted, killed again as soon as it is back, restarted again.

For each fault, from the moment the target is back (its start script returned: /ready answers,
or the broker lists its topics):
  - per consumer group (`<service>.<name>`): until its committed offsets reach the end offsets
    its topic had once every outbox had published what it held when the target came back, i.e.
    until it has processed everything published before and during the fault;
  - per outbox relay: until its backlog of that moment is published;
  - two things a customer sees, for a marker invoice finalized at that moment: payments opens a
    hosted checkout for it (POST /api/invoices/{id}/checkout stops answering 404), and its
    invoice.finalized webhook reaches a local receiver.
Baseline: the same measurements with no fault, taken first in the same run, under the same
traffic. One pass (a fault sequence takes minutes; --runs does not repeat it). The stack's state
stays in .local/recovery for a faster start next time; the stack is stopped at the end."""

import asyncio
import contextlib
import importlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.env import ROOT
from bench.loadgen import HttpPool
from bench.report import Row, progress
from bench.tenants import INVOICE_ITEMS
from deploy.local.receiver import WebhookReceiver

STATE_DIR = ROOT / ".local" / "recovery"
PORT_OFFSET = 1000
SERVICE = "webhooks"  # the service killed: the one seen four minutes late
# Invoices created and finalized per second (BILLSTREAM_BENCH_RECOVERY_RATE: e.g. 12 loads this machine).
RATE = float(os.environ.get("BILLSTREAM_BENCH_RECOVERY_RATE", "2"))
TARGET_S = 30.0
CAP_S = 120.0  # a consumer not caught up by then counts as this (and misses the target)
POLL_S = 0.2
SERVICES = ("invoicing", "payments", "dunning", "webhooks")


def load_stack():
    """tests/chaos/stack.py bound to this benchmark's state dir and ports (it reads them at import)."""
    os.environ["CHAOS_STATE_DIR"] = str(STATE_DIR)
    os.environ["CHAOS_PORT_OFFSET"] = str(PORT_OFFSET)
    stack = importlib.import_module("tests.chaos.stack")
    if stack.STATE != STATE_DIR or stack.OFFSET != PORT_OFFSET:
        stack = importlib.reload(stack)
    return stack


@dataclass
class Fault:
    label: str  # as in the table
    down_s: float  # seconds from the first kill until the target served again ("back")
    script_s: float  # seconds from the first kill until its start script returned
    groups: dict[str, float | None]  # consumer group → seconds from back until caught up
    relays: dict[str, float | None]  # service → seconds from back until its outbox backlog was published
    checkout_s: float | None  # from back
    webhook_s: float | None  # from back

    def worst(self) -> float | None:
        values = list(self.groups.values())
        return None if None in values else max(values, default=0.0)

    def slowest(self) -> str:
        return max(self.groups, key=lambda g: math.inf if self.groups[g] is None else self.groups[g])


@dataclass
class Traffic:
    """An invoice created and finalized every 1/rate s, open loop, errors counted, not retried."""

    http: HttpPool
    customer_id: str
    rate: float
    sent: int = 0
    failed: int = 0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        tasks: set[asyncio.Task] = set()
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not self.stopping.is_set():
            due = start + self.sent / self.rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            self.sent += 1
            task = asyncio.create_task(self._one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self) -> None:
        try:
            await create_finalized(self.http, self.customer_id)
        except Exception:  # noqa: BLE001 - a fault is going on: counted, not retried
            self.failed += 1


async def create_finalized(http: HttpPool, customer_id: str) -> str:
    status, body = await http.request(
        "POST", "/api/invoices", {"customerId": customer_id, "dueDate": "2030-12-31", "items": INVOICE_ITEMS}
    )
    if status != 201:
        raise RuntimeError(f"POST /api/invoices → {status}")
    invoice_id = json.loads(body)["id"]
    status, _ = await http.request("POST", f"/api/invoices/{invoice_id}/finalize", {})
    if status != 200:
        raise RuntimeError(f"finalize → {status}")
    return invoice_id


class Probe:
    """Reads the stack's outboxes, consumer groups and end offsets."""

    def __init__(self, stack) -> None:
        env = stack.env()
        self.bootstrap = f"127.0.0.1:{stack.PORTS['kafka']}"
        self.dsns = {svc: env[f"BILLSTREAM_{svc.upper()}_DATABASE_URL"] for svc in SERVICES}
        self.ready_urls = {svc: f"http://127.0.0.1:{stack.PORTS[svc]}/ready" for svc in SERVICES}
        self.topics_of: dict[str, set[str]] = {}  # service → topics its relay publishes
        self.groups: list[str] = []

    async def discover(self) -> None:
        for svc, dsn in self.dsns.items():
            self.topics_of[svc] = {r["topic"] for r in await _fetch(dsn, "SELECT DISTINCT topic FROM outbox")}
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        await admin.start()
        try:
            self.groups = sorted(g[0] for g in await admin.list_consumer_groups())
        finally:
            await admin.close()

    @staticmethod
    def topic_of(group: str) -> str:
        return "billing." + group.split(".", 1)[1]  # Service.consume(topic, name): billing.<name>

    async def serving(self, target: str) -> bool:
        """Kafka: a fresh client reads the end offsets of every topic (leaders elected, requests
        served); a service: its /ready answers 200."""
        if target in SERVICES:
            http = HttpPool(self.ready_urls[target].rsplit("/", 1)[0], timeout=2.0)
            try:
                return (await http.request("GET", "/ready"))[0] == 200
            except Exception:  # noqa: BLE001
                return False
            finally:
                await http.close()
        tail = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, request_timeout_ms=2000)
        try:
            await asyncio.wait_for(tail.start(), 3)
            for topic in {t for ts in self.topics_of.values() for t in ts}:
                await asyncio.wait_for(_end_offsets(tail, topic), 3)
            return True
        except Exception:  # noqa: BLE001
            return False
        finally:
            with contextlib.suppress(Exception):
                await tail.stop()

    async def catch_up(self, back: float, markers: "Markers") -> tuple[dict, dict]:
        """Seconds from `back` until each relay published its backlog and each group caught up."""
        marks = {
            svc: await _retry(lambda d=dsn: _fetchval(d, "SELECT coalesce(max(position), 0) FROM outbox"))
            for svc, dsn in self.dsns.items()
        }
        relays: dict[str, float | None] = dict.fromkeys(SERVICES)
        ends: dict[str, dict[TopicPartition, int]] = {}  # topic → end offsets once its producer drained
        groups: dict[str, float | None] = dict.fromkeys(self.groups)
        tail = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        await _retry(tail.start)
        await _retry(admin.start)

        async def relay(svc: str) -> None:
            sql = "SELECT NOT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL AND position <= $1)"
            while not await _retry(lambda: _fetchval(self.dsns[svc], sql, marks[svc])):
                await asyncio.sleep(POLL_S)
            relays[svc] = time.monotonic() - back
            for topic in self.topics_of[svc]:
                ends[topic] = await _retry(lambda t=topic: _end_offsets(tail, t))

        async def group(name: str) -> None:
            topic = self.topic_of(name)
            if not any(topic in ts for ts in self.topics_of.values()):
                ends.setdefault(topic, await _retry(lambda: _end_offsets(tail, topic)))
            while True:
                if topic in ends:
                    try:
                        committed = await asyncio.wait_for(admin.list_consumer_group_offsets(name), 5)
                        if all(
                            (committed[tp].offset if tp in committed else 0) >= end for tp, end in ends[topic].items()
                        ):
                            groups[name] = time.monotonic() - back
                            return
                    except Exception:  # noqa: BLE001 - coordinator loading or moving: ask again
                        pass
                await asyncio.sleep(POLL_S)

        tasks = [*(relay(svc) for svc in SERVICES), *(group(g) for g in self.groups), markers.wait()]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), CAP_S - (time.monotonic() - back))
        except TimeoutError:
            pass  # what is still None did not catch up within the cap
        finally:
            await admin.close()
            await tail.stop()
        return groups, relays


class Markers:
    """A marker invoice finalized when the target is back: when payments opens a checkout for it,
    and when its invoice.finalized webhook arrives."""

    def __init__(self, http: HttpPool, customer_id: str, receiver: WebhookReceiver) -> None:
        self.http, self.customer_id, self.receiver = http, customer_id, receiver
        self.checkout_s: float | None = None
        self.webhook_s: float | None = None
        self._tasks: list[asyncio.Task] = []
        self._bodies: list[bytes] = []  # invoice.finalized webhooks received

    def start(self, back: float) -> None:
        self.checkout_s = self.webhook_s = None
        self._tasks = [asyncio.create_task(self._run(back))]

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks)

    async def finish(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, back: float) -> None:
        while True:  # the marker itself: invoicing may be taking its first requests again
            try:
                invoice_id = await create_finalized(self.http, self.customer_id)
                break
            except Exception:  # noqa: BLE001
                await asyncio.sleep(POLL_S)
        await asyncio.gather(self._checkout(invoice_id, back), self._webhook(invoice_id, back))

    async def _checkout(self, invoice_id: str, back: float) -> None:
        while True:
            try:
                status, _ = await self.http.request("POST", f"/api/invoices/{invoice_id}/checkout", {})
                if status == 201:
                    self.checkout_s = time.monotonic() - back
                    return
            except Exception:  # noqa: BLE001
                pass
            await asyncio.sleep(POLL_S)

    async def _webhook(self, invoice_id: str, back: float) -> None:
        marker = invoice_id.encode()
        while not any(marker in body for body in self._bodies):
            while not self.receiver.received.empty():
                w = self.receiver.received.get()
                if w.verified and (w.payload or {}).get("type") == "invoice.finalized":
                    self._bodies.append(w.body)
            await asyncio.sleep(0.05)
        self.webhook_s = time.monotonic() - back


_conns: dict[str, asyncpg.Connection] = {}


async def _conn(dsn: str) -> asyncpg.Connection:
    conn = _conns.get(dsn)
    if conn is None or conn.is_closed():
        conn = _conns[dsn] = await asyncpg.connect(dsn, timeout=5)
    return conn


async def _fetchval(dsn: str, sql: str, *args):
    try:
        return await (await _conn(dsn)).fetchval(sql, *args)
    except Exception:
        with contextlib.suppress(Exception):
            await _conns.pop(dsn).close()
        raise


async def _fetch(dsn: str, sql: str, *args):
    return await (await _conn(dsn)).fetch(sql, *args)


async def _close_conns() -> None:
    for conn in _conns.values():
        with contextlib.suppress(Exception):
            await conn.close()
    _conns.clear()


async def _end_offsets(tail: AIOKafkaConsumer, topic: str) -> dict[TopicPartition, int]:
    partitions = tail.partitions_for_topic(topic)
    if not partitions:
        await tail._client.force_metadata_update()  # private API: a fresh client knows no topic yet
        partitions = tail.partitions_for_topic(topic) or set()
    if not partitions:
        raise RuntimeError(f"no partitions for {topic} yet")
    return await asyncio.wait_for(tail.end_offsets([TopicPartition(topic, p) for p in partitions]), 10)


async def _retry(call, timeout: float = CAP_S):
    """A call to a broker or database that is just back: again until it answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncio.wait_for(call(), 10)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(POLL_S)


def _tenant(stack) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "services.invoicing", "tenants", "create", "--name", "Recovery bench", "--json"],
        cwd=stack.ROOT,
        env=stack.env(),
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stdout)


async def _wait_active(http: HttpPool) -> None:
    deadline = time.monotonic() + 60
    for path in ("/api/invoices", "/api/payments", "/api/webhook-endpoints"):
        while True:
            try:
                if (await http.request("GET", path))[0] == 200:
                    break
            except Exception:  # noqa: BLE001
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bench key is not active for {path}")
            await asyncio.sleep(0.3)


def _kill_and_restart(stack, target: str, times: int, last_kill: threading.Event) -> float:
    """kill -9 `target` and restart it as the chaos run does (`services.sh start SVC`,
    `kafka.sh start`), `times` in a row; `last_kill` is set once the last kill is done. Seconds
    from the first kill until the start script returned."""
    began = time.monotonic()
    for i in range(times):
        stack.kill9(target)
        if i == times - 1:
            last_kill.set()
        time.sleep(1.0)
        if target == "kafka":
            stack.start_until_ready("kafka")
        else:
            stack.start_until_ready("services", target)
    return time.monotonic() - began


async def _measure(label: str, probe: Probe, markers: Markers, stack=None, target: str = "", times: int = 1) -> Fault:
    began = time.monotonic()
    script_s = 0.0
    restart = None
    if target:
        last_kill = threading.Event()
        restart = asyncio.create_task(asyncio.to_thread(_kill_and_restart, stack, target, times, last_kill))
        while not last_kill.is_set():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the killed process's port closes
        while not await probe.serving(target):
            if restart.done():
                restart.result()  # a start script that failed: raise its error
            await asyncio.sleep(POLL_S)
    back = time.monotonic()
    markers.start(back)
    try:
        groups, relays = await probe.catch_up(back, markers)
    finally:
        await markers.finish()
    if restart is not None:
        script_s = await restart
    fault = Fault(label, back - began, script_s, groups, relays, markers.checkout_s, markers.webhook_s)
    worst = fault.worst()
    progress(
        "recovery",
        f"{label}: serving {fault.down_s:.1f} s after the kill (start script: {script_s:.1f} s); "
        f"every consumer caught up {f'not within {CAP_S:.0f} s' if worst is None else f'after {worst:.1f} s'}"
        f" (slowest: {fault.slowest()}); checkout after {_s(fault.checkout_s)}, "
        f"webhook after {_s(fault.webhook_s)}",
    )
    return fault


def _s(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} s"


async def run(quick: bool, runs: int) -> list[Row]:  # runs is unused: one pass, see the docstring
    stack = load_stack()
    progress("recovery", f"starting the isolated stack in {stack.STATE} (gateway {stack.GATEWAY})")
    t0 = time.monotonic()
    await asyncio.to_thread(stack.up)
    progress("recovery", f"stack up in {time.monotonic() - t0:.0f} s")
    try:
        return await _run(stack)
    finally:
        progress("recovery", "stopping the isolated stack")
        await asyncio.to_thread(stack.down)


async def _run(stack) -> list[Row]:
    tenant = await asyncio.to_thread(_tenant, stack)
    http = HttpPool(stack.GATEWAY, {"Authorization": f"Bearer {tenant['apiKey']}"}, timeout=5.0)
    await _wait_active(http)
    status, body = await http.request(
        "POST", "/api/customers", {"name": "Recovery Buyer", "email": "buyer@recovery.example", "currency": "USD"}
    )
    if status != 201:
        raise RuntimeError(f"POST /api/customers → {status} {body[:200]!r}")
    customer_id = json.loads(body)["id"]
    with WebhookReceiver() as receiver:
        status, body = await http.request(
            "POST", "/api/webhook-endpoints", {"url": receiver.url, "enabledEvents": ["invoice.finalized"]}
        )
        if status != 201:
            raise RuntimeError(f"POST /api/webhook-endpoints → {status} {body[:200]!r}")
        receiver.secret = json.loads(body)["secret"]
        traffic = Traffic(http, customer_id, RATE)
        driver = asyncio.create_task(traffic.run())
        try:
            await asyncio.sleep(5)  # every group has members and offsets; the relays are leading
            probe = Probe(stack)
            await probe.discover()
            markers = Markers(http, customer_id, receiver)
            faults = [await _measure("no fault", probe, markers)]
            for label, target, times in (
                (f"kill -9 {SERVICE}", SERVICE, 1),
                ("kill -9 Kafka", "kafka", 1),
                ("kill -9 Kafka twice in a row", "kafka", 2),
            ):
                progress("recovery", f"{label} under {RATE:g} invoices/s")
                faults.append(await _measure(label, probe, markers, stack, target, times))
                await asyncio.sleep(3)
        finally:
            traffic.stopping.set()
            await driver
            await http.close()
            await _close_conns()
    progress("recovery", f"traffic: {traffic.sent} invoices, {traffic.failed} not acknowledged during faults")
    return rows(faults)


def rows(faults: list[Fault]) -> list[Row]:
    base, *hit = faults
    same = "no fault, same run"
    target = f"≤ {TARGET_S:.0f} s"

    def cap(v: float | None) -> float:
        return CAP_S if v is None else v

    def late(v: float | None) -> str:
        return "" if v is not None else f" (not within {CAP_S:.0f} s)"

    out: list[Row] = []
    for f in hit:
        worst, base_worst = f.worst(), base.worst()
        out += [
            Row("recovery", f"{f.label}: kill → serving again", f.down_s, "s"),
            Row("recovery", f"{f.label}: kill → start script returned", f.script_s, "s"),
            Row(
                "recovery",
                f"{f.label}: back → every consumer caught up{late(worst)}",
                cap(worst),
                "s",
                base_worst,
                same,
                target,
                worst is not None and worst <= TARGET_S,
            ),
            Row(
                "recovery",
                f"{f.label}: kill → every consumer caught up{late(worst)}",
                f.down_s + cap(worst),
                "s",
                base_worst,
                same,
            ),
        ]
        for group, v in f.groups.items():
            out.append(
                Row(
                    "recovery",
                    f"{f.label}: back → {group} caught up{late(v)}",
                    cap(v),
                    "s",
                    base.groups.get(group),
                    same,
                    target,
                    v is not None and v <= TARGET_S,
                )
            )
        relay = None if None in f.relays.values() else max(f.relays.values())
        out.append(
            Row(
                "recovery",
                f"{f.label}: back → outbox relays published their backlog{late(relay)}",
                cap(relay),
                "s",
                max(cap(v) for v in base.relays.values()),
                same,
            )
        )
        for what, v, b in (
            ("payments opens a checkout for an invoice finalized at back", f.checkout_s, base.checkout_s),
            ("that invoice's invoice.finalized webhook received", f.webhook_s, base.webhook_s),
        ):
            out.append(
                Row(
                    "recovery",
                    f"{f.label}: {what}{late(v)}",
                    cap(v),
                    "s",
                    b,
                    same,
                    target,
                    v is not None and v <= TARGET_S,
                )
            )
    return out
