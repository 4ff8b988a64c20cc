"""(3) Event → read model visible: invoice.created events appended at a fixed rate to a scratch
invoicing database while a projection runner process (the service's ProjectionRunner with the
Invoicing projections) keeps invoice_list current. A watcher process records when the
projection's checkpoint (committed with its rows) passes each event's position.

Baseline: from the same commit times, when the same watcher first sees the event in the store:
the floor of this measurement (commit visibility plus polling)."""

import asyncio
import bisect
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.env import INVOICING_MIGRATIONS, ROOT, scratch_pool
from bench.report import Row, progress
from bench.stats import latency_summary, median_of_runs
from bench.templates import STORE, invoice_lifecycle, restamp
from shared.ids import new_id

TARGET_P99_MS = 500.0


def _first_time_reaching(timeline: list[tuple[float, int]], position: int) -> float | None:
    """The first time in a (time, value) timeline whose value is ≥ position (values only grow)."""
    values = [v for _, v in timeline]
    i = bisect.bisect_left(values, position)
    return timeline[i][0] if i < len(timeline) else None


async def _one_run(pool: asyncpg.Pool, dsn: str, template, rate: float, seconds: float) -> tuple[dict, dict]:
    # Made before the clock starts, so the writer spends its time appending.
    events = [restamp(template, new_id("inv")) for _ in range(int(rate * seconds))]
    committed: dict[str, float] = {}

    async def append_one(event) -> None:
        async with pool.acquire() as conn:
            async with conn.transaction():
                await STORE.append(conn, "invoice", event.subject, 0, [event])
            committed[event.id] = time.time()

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "watch.log"
        watcher = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.watcher", dsn, str(log),
                                                       cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        try:
            await asyncio.wait_for(watcher.stdout.readline(), 30)
            loop = asyncio.get_running_loop()
            start, tasks = loop.time(), []
            for i, event in enumerate(events):
                if (delay := start + i / rate - loop.time()) > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(append_one(event)))
            await asyncio.gather(*tasks)
            last = await pool.fetchval("SELECT max(position) FROM events")
            deadline = time.monotonic() + 60
            while (await pool.fetchval("SELECT position FROM projection_checkpoints WHERE name = 'invoice_list'")
                   or 0) < last and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):
                watcher.terminate()
            await watcher.wait()
        lines = [line.split() for line in log.read_text().splitlines()]
    checkpoints = [(float(t), int(cp)) for t, cp, _ in lines]
    stored = [(float(t), int(mx)) for t, _, mx in lines]
    positions = dict(await pool.fetch("SELECT event_id, position FROM events WHERE event_id = ANY($1)",
                                      list(committed)))
    to_model, to_store = [], []
    for event_id, at in committed.items():
        if (seen := _first_time_reaching(checkpoints, positions[event_id])) is not None:
            to_model.append(max(seen - at, 0.0))
        if (seen := _first_time_reaching(stored, positions[event_id])) is not None:
            to_store.append(max(seen - at, 0.0))
    return latency_summary(to_model), latency_summary(to_store)


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
                model_runs, store_runs = [], []
                for i in range(runs):
                    progress("projection", f"{rate} events/s for {seconds:g} s: run {i + 1}/{runs}")
                    m, s = await _one_run(pool, dsn, template, rate, seconds)
                    model_runs.append(m)
                    store_runs.append(s)
                m, s = median_of_runs(model_runs), median_of_runs(store_runs)
                what = "event visible in the store"
                rows.append(Row("projection", f"event → invoice_list p50 at {rate}/s", m["p50"], "ms", s["p50"], what))
                rows.append(Row("projection", f"event → invoice_list p99 at {rate}/s", m["p99"], "ms", s["p99"], what,
                                "≤ 500 ms", m["p99"] <= TARGET_P99_MS))
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await proc.wait()
    return rows
