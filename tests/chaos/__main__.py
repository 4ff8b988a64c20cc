"""make chaos: python -m tests.chaos. Brings up its own stack (tests/chaos/stack.py), drives
traffic while the seeded schedule injects faults, waits for quiet, audits, prints one line, and
exits non-zero when anything acknowledged was lost, duplicated or stuck, or a webhook did not
verify. CHAOS_SECONDS (120), CHAOS_SEED (1), CHAOS_QUIET_SECONDS (180), CHAOS_WORKERS (4),
CHAOS_OP_BUDGET_S (60), CHAOS_KEEP_STACK=1 leaves the stack running afterwards."""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict

import httpx

from deploy.local.receiver import WebhookReceiver

from . import stack
from .audit import collect, tally
from .schedule import SERVICES, Fault, plan
from .traffic import Traffic


def say(message: str) -> None:
    print(f"[chaos] {message}", flush=True)


def inject(fault: Fault, clock) -> dict:
    """One fault, start to recovery (blocking: run in a thread while the traffic goes on)."""
    began = clock()
    if fault.target in SERVICES or fault.target == "kafka":
        if not stack.kill9(fault.target):
            say(f"{fault.target} was not running before the kill")
        time.sleep(fault.down_s)
        stack.start_until_ready(
            "services" if fault.target in SERVICES else "kafka", *([fault.target] if fault.target in SERVICES else [])
        )
    else:
        stack.script("postgres", "stop", "immediate", check=False)
        time.sleep(fault.down_s)
        stack.start_until_ready("postgres")
    record = {"at": began, "back": clock(), "target": fault.target, "kind": fault.kind, "down_s": fault.down_s}
    say(f"t+{began:.0f}s {fault.describe().split(', ')[0].split(' ', 1)[1]}: back after {record['back'] - began:.1f}s")
    return record


async def drive(traffic: Traffic, faults: list[Fault], seconds: float, workers: int) -> list[dict]:
    tasks = [asyncio.create_task(traffic.worker(i)) for i in range(workers)]
    done, hit = [], set()
    for fault in faults:
        # Recoveries can run longer than planned: past the end, only a target not hit yet still gets its fault.
        if traffic.now() > seconds and fault.target in hit:
            continue
        hit.add(fault.target)
        if (wait := fault.at - traffic.now()) > 0:
            await asyncio.sleep(wait)
        done.append(await asyncio.to_thread(inject, fault, traffic.now))
    if (rest := seconds - traffic.now()) > 0:
        await asyncio.sleep(rest)
    say(f"t+{traffic.now():.0f}s stopping traffic ({len(traffic.ops)} operations so far)")
    traffic.stopping.set()
    _, pending = await asyncio.wait(tasks, timeout=traffic.budget_s * 4)
    for task in pending:  # a story still retrying long after the end: its open op counts as gave up
        task.cancel()
    for op in traffic.ops:
        if not (op.acked or op.refused or op.gave_up):
            op.gave_up, op.ended = True, traffic.now()
    return done


def create_tenant(name: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "services.invoicing", "tenants", "create", "--name", name, "--json"],
        cwd=stack.ROOT,
        env=stack.env(),
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def wait_active(client: httpx.Client, timeout: float = 60) -> None:
    """The key reaches every service over billing.tenants."""
    deadline = time.monotonic() + timeout
    for path in ("/api/invoices", "/api/payments", "/api/webhook-endpoints"):
        while True:
            try:
                if client.get(path).status_code != 401:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"API key not active for {path}")
            time.sleep(0.3)


def _answer(op) -> str:
    return "acked" if op.acked else "committed" if op.committed else "gave_up" if op.gave_up else "refused"


def near(fault_log: list[dict], at: float | None) -> str | None:
    """The fault closest before (or during) a moment, to put a finding in context."""
    if at is None:
        return None
    before = [f for f in fault_log if f["at"] <= at + 1]
    if not before:
        return None
    f = before[-1]
    return f"{f['kind']} {f['target']} at t+{f['at']:.0f}s (back t+{f['back']:.0f}s)"


def main() -> int:
    seed = int(os.environ.get("CHAOS_SEED", "1"))
    seconds = float(os.environ.get("CHAOS_SECONDS", "120"))
    quiet_s = float(os.environ.get("CHAOS_QUIET_SECONDS", "180"))
    workers = int(os.environ.get("CHAOS_WORKERS", "4"))
    budget = float(os.environ.get("CHAOS_OP_BUDGET_S", "60"))
    tag = f"s{seed}x{uuid.uuid4().hex[:6]}"  # in every name and address of this run
    faults = plan(seed, seconds)
    say(
        f"seed {seed}, {seconds:.0f}s of traffic, {len(faults)} faults planned: "
        + "; ".join(f.describe() for f in faults)
    )
    say(f"starting the isolated stack in {stack.STATE} (gateway {stack.GATEWAY})")
    began = time.monotonic()
    stack.up()
    receiver = WebhookReceiver()
    try:
        with receiver:
            tenant = create_tenant(f"Chaos {tag}")
            with httpx.Client(
                base_url=stack.GATEWAY, timeout=15, headers={"Authorization": f"Bearer {tenant['apiKey']}"}
            ) as client:
                wait_active(client)
                endpoint = client.post("/api/webhook-endpoints", json={"url": receiver.url, "enabledEvents": ["*"]})
                endpoint.raise_for_status()
                endpoint = endpoint.json()
                receiver.secret = endpoint["secret"]

                traffic = Traffic(stack.GATEWAY, tenant["apiKey"], tag, seed=seed, budget_s=budget)
                fault_log = asyncio.run(drive(traffic, faults, seconds, workers))
                traffic_s = traffic.now()

                # Quiet: audit until nothing is missing or pending any more, or the bound passes.
                webhooks: list[dict] = []
                quiet_from, late = time.monotonic(), []
                while True:
                    while not receiver.received.empty():
                        w = receiver.received.get()
                        payload = w.payload or {}
                        webhooks.append(
                            {
                                "id": w.headers.get("webhook-id"),
                                "type": payload.get("type"),
                                "verified": w.verified,
                                "data": payload.get("data") or {},
                            }
                        )
                    obs = collect(client, traffic.ops, webhooks, endpoint["id"], stack.STATE / "mail", tag)
                    result = tally(traffic.ops, obs)
                    waited = time.monotonic() - quiet_from
                    if not (result.lost or result.stuck) or waited > quiet_s:
                        break
                    say(f"waiting for quiet ({waited:.0f}s): {result.lost} missing, {result.stuck} pending")
                    if waited > 10:  # slow to arrive (even if it comes in the end): kept for the report
                        late = [{**f, "still_missing_after_s": round(waited)} for f in result.findings]
                    time.sleep(5)
        ops = traffic.ops
        line = (
            f"chaos: seed={seed} seconds={traffic_s:.0f} faults={len(fault_log)} operations={len(ops)} "
            f"lost={result.lost} duplicated={result.duplicated} stuck={result.stuck} "
            f"unverified={result.unverified} gave_up={result.gave_up}"
        )
        report = {
            "line": line,
            "tag": tag,
            "tenant": tenant["tenantId"],
            "endpoint": endpoint["id"],
            "quiet_after_s": round(waited, 1),
            "total_s": round(time.monotonic() - began, 1),
            "redelivered": result.redelivered,
            "facts_checked": result.checked,
            "webhooks_received": len(webhooks),
            "emails": len(obs.emails),
            "faults": fault_log,
            "operations": dict(Counter(f"{op.kind}:{_answer(op)}" for op in ops)),
            "refused": dict(Counter(f"{op.kind}:{op.refused}" for op in ops if op.refused)),
            "findings": [{**f, "fault_near": near(fault_log, f["at"])} for f in result.findings],
            "slow_to_arrive": [] if result.failed else late,
            "gave_up": [asdict(op) for op in ops if op.gave_up],
            "ledger": [asdict(op) for op in ops],
        }
        path = stack.STATE / f"chaos-seed{seed}.json"
        path.write_text(json.dumps(report, indent=1, default=str))
        for f in report["findings"][:30]:
            say(
                f"{f['what']}: {f['detail']} (op {f['op']} {f['kind']}, ids "
                f"{ {k: v for k, v in f.items() if k.endswith('_id') or k in ('reference', 'number')} }, "
                f"near {f['fault_near']})"
            )
        say(
            f"report: {path} ({result.checked} facts checked, redelivered={result.redelivered}, "
            f"quiet after {waited:.0f}s)"
        )
        print(line, flush=True)
        return 1 if result.failed else 0
    finally:
        if os.environ.get("CHAOS_KEEP_STACK") != "1":
            stack.down()


if __name__ == "__main__":
    sys.exit(main())
