"""(3) Event → read model visible: invoice.created events appended at a fixed rate to a scratch
invoicing database while a projection runner process (the service's ProjectionRunner with the
Invoicing projections) keeps invoice_list current. A watcher process records when the
projection's checkpoint (committed with its rows) passes each event's place in the store's
reading order.

Baseline: from the same commit times, when the same watcher first sees that a reader of the store
could take the event: the floor of this measurement (commit, every older transaction finished,
polling)."""

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


Place = tuple[int, int]  # (transaction id, position): the store's reading order


def _first_time_reaching(timeline: list[tuple[float, Place]], place: Place) -> float | None:
    """The first time in a (time, place) timeline whose place is ≥ place (places only grow)."""
    values = [v for _, v in timeline]
    i = bisect.bisect_left(values, place)
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
        watcher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.watcher", dsn, str(log), cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
        try:
            await asyncio.wait_for(watcher.stdout.readline(), 30)
            loop = asyncio.get_running_loop()
            start, tasks = loop.time(), []
            for i, event in enumerate(events):
                if (delay := start + i / rate - loop.time()) > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(append_one(event)))
            await asyncio.gather(*tasks)
            last = tuple(
                await pool.fetchrow(
                    "SELECT transaction_id, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1"
                )
            )
            deadline = time.monotonic() + 60
            while (
                tuple(
                    await pool.fetchrow(
                        "SELECT transaction_id, position FROM projection_checkpoints WHERE name = 'invoice_list'"
                    )
                    or (0, 0)
                )
                < last
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):
                watcher.terminate()
            await watcher.wait()
        lines = [line.split() for line in log.read_text().splitlines()]
    checkpoints = [(float(t), (int(cx), int(cp))) for t, cx, cp, _, _ in lines]
    stored = [(float(t), (int(rx), int(rp))) for t, _, _, rx, rp in lines]
    positions = {
        r["event_id"]: (r["transaction_id"], r["position"])
        for r in await pool.fetch(
            "SELECT event_id, transaction_id, position FROM events WHERE event_id = ANY($1)", list(committed)
        )
    }
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
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.projector", dsn, cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
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
                what = "event readable in the store"
                rows.append(Row("projection", f"event → invoice_list p50 at {rate}/s", m["p50"], "ms", s["p50"], what))
                rows.append(
                    Row(
                        "projection",
                        f"event → invoice_list p99 at {rate}/s",
                        m["p99"],
                        "ms",
                        s["p99"],
                        what,
                        "≤ 500 ms",
                        m["p99"] <= TARGET_P99_MS,
                    )
                )
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await proc.wait()
    return rows
