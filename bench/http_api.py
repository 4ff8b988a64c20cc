"""(2) POST /api/invoices through the :3000 origin at fixed arrival rates: p50/p99/p99.9 at
100 requests/s, and the highest rate at which p99 stays under 50 ms. Baseline: the same
invoicing process answering a trivial request through :3000 (GET /api/invoices without a key:
nginx, the FastAPI middlewares and a 401, no database). The gateway's own /health is answered by
nginx without reaching the service, so it would measure only nginx."""

import asyncio

from bench.env import GATEWAY, SERVICES, cpu_seconds, service_pid
from bench.loadgen import HttpPool, open_loop
from bench.report import Row, progress
from bench.stats import latency_summary, median_of_runs
from bench.tenants import bench_tenant

P99_LIMIT_MS = 50.0
LADDER = (10, 25, 50, 75, 100, 150, 200, 300, 400, 600, 800, 1000)


class CpuMeter:
    """CPU time each running service spends per request: what bounds the rate on a small machine,
    since one invoice costs CPU in every service that consumes its events."""

    def __init__(self) -> None:
        self.pids = {s: pid for s in SERVICES if (pid := service_pid(s)) and cpu_seconds(pid) is not None}
        self.start = {s: cpu_seconds(pid) for s, pid in self.pids.items()}

    def ms_per(self, requests: int) -> dict[str, float]:
        return {s: ((cpu_seconds(pid) or 0) - self.start[s]) * 1000 / max(requests, 1) for s, pid in self.pids.items()}


async def _measure(send, ok, rate: float, seconds: float, runs: int, label: str) -> dict[str, float]:
    results = []
    for i in range(runs):
        progress("http", f"{label} at {rate:g}/s: run {i + 1}/{runs}")
        r = await open_loop(send, rate, seconds, ok=ok)
        if r.errors:
            progress("http", f"[yellow]{r.errors} errors: {dict(r.error_kinds)}[/]")
        results.append(
            {**latency_summary(r.latencies, (50, 99, 99.9)), "errors": r.error_rate, "requests": len(r.latencies)}
        )
        await asyncio.sleep(0.5)
    return median_of_runs(results)


async def _max_rate(send, ok, seconds: float, runs: int, label: str, ladder) -> float:
    """The highest rate of the ladder whose median p99 < 50 ms with under 1% errors."""
    best = 0.0
    for rate in ladder:
        m = await _measure(send, ok, rate, seconds, runs, label)
        progress("http", f"{label} at {rate}/s: p99 {m['p99']:.1f} ms, errors {m['errors']:.1%}")
        if not (m["p99"] < P99_LIMIT_MS and m["errors"] < 0.01):
            break
        best = rate
        await asyncio.sleep(2)  # let the consumers downstream drain before the next step
    return best


async def run(quick: bool, runs: int) -> list[Row]:
    tenant = await bench_tenant("http")
    anonymous = HttpPool(GATEWAY)
    create = lambda: tenant.http.request("POST", "/api/invoices", tenant.invoice_body())  # noqa: E731
    trivial = lambda: anonymous.request("GET", "/api/invoices")  # noqa: E731
    created, rejected = (lambda s: s == 201), (lambda s: s == 401)
    seconds, step_seconds = (1.5, 1.0) if quick else (10.0, 3.0)
    ladder = (50, 100, 200) if quick else LADDER
    try:
        meter = CpuMeter()
        post = await _measure(create, created, 100, seconds, runs, "POST /api/invoices")
        await asyncio.sleep(3)  # the consumers downstream finish the last invoices' events
        post_cpu = meter.ms_per(round(post["requests"] * runs))
        meter = CpuMeter()
        base = await _measure(trivial, rejected, 100, seconds, runs, "trivial GET (401)")
        base_cpu = meter.ms_per(round(base["requests"] * runs))
        post_max = await _max_rate(create, created, step_seconds, runs, "POST /api/invoices", ladder)
        base_max = await _max_rate(trivial, rejected, step_seconds, runs, "trivial GET (401)", ladder)
    finally:
        await tenant.http.close()
        await anonymous.close()
    what = "trivial GET, same process"
    return [
        Row("http", "POST /api/invoices p50 at 100/s", post["p50"], "ms", base["p50"], what),
        Row(
            "http",
            "POST /api/invoices p99 at 100/s",
            post["p99"],
            "ms",
            base["p99"],
            what,
            "≤ 50 ms",
            post["p99"] <= P99_LIMIT_MS,
        ),
        Row("http", "POST /api/invoices p99.9 at 100/s", post["p99.9"], "ms", base["p99.9"], what),
        Row("http", "POST /api/invoices errors at 100/s", post["errors"] * 100, "%", base["errors"] * 100, what),
        Row("http", f"highest rate with p99 < 50 ms (ladder up to {ladder[-1]}/s)", post_max, "req/s", base_max, what),
        *[
            Row("http", f"{s} CPU per POST /api/invoices at 100/s", ms, "ms", base_cpu.get(s), "per trivial GET")
            for s, ms in post_cpu.items()
        ],
        Row(
            "http",
            "all services' CPU per POST /api/invoices",
            sum(post_cpu.values()),
            "ms",
            sum(base_cpu.values()),
            "per trivial GET",
        ),
    ]
