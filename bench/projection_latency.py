"""(3) Event → read model visible: invoice.created events appended at a fixed rate to a scratch
invoicing database while a projection runner process (the service's ProjectionRunner with the
Invoicing projections) keeps invoice_list current; a watcher polls for each invoice's row.

Baseline: the same writer and watcher, with the row written in the append's own transaction:
the floor of this measurement (commit visibility plus the watcher's polling)."""

import asyncio
import contextlib
import sys
import time

import asyncpg

from bench.env import INVOICING_MIGRATIONS, ROOT, scratch_pool
from bench.report import Row, progress
from bench.stats import latency_summary, median_of_runs
from bench.templates import STORE, invoice_lifecycle, restamp
from services.invoicing.projections.invoice_list import InvoiceList
from shared.eventstore import StoredEvent
from shared.ids import new_id

POLL_S = 0.002
TARGET_P99_MS = 500.0


async def _watch(pool: asyncpg.Pool, pending: dict[str, float], seen: list[float], done: asyncio.Event) -> None:
    while not (done.is_set() and not pending):
        if pending:
            rows = await pool.fetch("SELECT invoice_id FROM invoice_list WHERE invoice_id = ANY($1)", list(pending))
            now = time.perf_counter()
            for r in rows:
                seen.append(now - pending.pop(r["invoice_id"]))
        await asyncio.sleep(POLL_S)


async def _one_run(pool: asyncpg.Pool, template, rate: float, seconds: float, inline: bool) -> dict[str, float]:
    pending: dict[str, float] = {}
    seen: list[float] = []
    done = asyncio.Event()
    watcher = asyncio.create_task(_watch(pool, pending, seen, done))
    projection = InvoiceList()

    async def append_one() -> None:
        invoice_id = new_id("inv")
        event = restamp(template, invoice_id)
        async with pool.acquire() as conn:
            async with conn.transaction():
                await STORE.append(conn, "invoice", invoice_id, 0, [event])
                if inline:
                    await projection.apply(conn, StoredEvent(0, invoice_id, "invoice", 1, event))
            pending[invoice_id] = time.perf_counter()

    loop = asyncio.get_running_loop()
    start, tasks = loop.time(), []
    for i in range(int(rate * seconds)):
        if (delay := start + i / rate - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(append_one()))
    await asyncio.gather(*tasks)
    done.set()
    try:
        await asyncio.wait_for(watcher, 30)
    except TimeoutError:
        pass
    lost = len(pending)
    return {**latency_summary(seen), "lost": float(lost)}


async def run(quick: bool, runs: int) -> list[Row]:
    seconds = 1.5 if quick else 5.0
    rows: list[Row] = []
    async with scratch_pool(INVOICING_MIGRATIONS, max_size=30) as (dsn, pool):
        template = (await invoice_lifecycle(pool))[0]  # invoice.created
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.projector", dsn, cwd=ROOT,
                                                    stdout=asyncio.subprocess.PIPE)
        try:
            await asyncio.wait_for(proc.stdout.readline(), 30)
            for rate in (100, 500):
                runner_runs, inline_runs = [], []
                for i in range(runs):
                    progress("projection", f"{rate} events/s: run {i + 1}/{runs}")
                    runner_runs.append(await _one_run(pool, template, rate, seconds, inline=False))
                    inline_runs.append(await _one_run(pool, template, rate, seconds, inline=True))
                r, b = median_of_runs(runner_runs), median_of_runs(inline_runs)
                what = "row in the append's transaction"
                rows.append(Row("projection", f"event → invoice_list p50 at {rate}/s", r["p50"], "ms", b["p50"], what))
                rows.append(Row("projection", f"event → invoice_list p99 at {rate}/s", r["p99"], "ms", b["p99"], what,
                                "≤ 500 ms", r["p99"] <= TARGET_P99_MS and r["lost"] == 0))
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await proc.wait()
    return rows
