"""(5) Projection rebuild rate: invoice_list rebuilt from a scratch store of many invoice events
(1,000,000 in the full run), generated in the database from real events by the Invoicing handlers.

Baseline: the same replay reading and decoding events (EventStore.read_all, the first 200,000)
without applying them: the floor set by reading the store."""

import json
import time

from bench.env import INVOICING_MIGRATIONS, scratch_pool
from bench.report import Row, progress
from bench.stats import median
from bench.templates import STORE, TENANT, invoice_lifecycle
from services.invoicing.projections.invoice_list import InvoiceList
from shared.eventstore import Checkpoint
from shared.projections import rebuild

TARGET_RATE = 20_000

# One row per (invoice g, template k), interleaved as a real store is: each invoice's lifecycle
# in order, invoices one after another. Ids in the template text are replaced per invoice.
GENERATE = """
INSERT INTO events (event_id, stream_id, stream_type, version, event_type, tenant_id, occurred_at, envelope)
SELECT 'evt_b' || g || '_' || t.k, 'inv_b' || g, 'invoice', t.k, t.type, $4, t.at,
       replace(replace(t.body, $1, 'inv_b' || g), t.event_id, 'evt_b' || g || '_' || t.k)::jsonb
FROM generate_series(1, $2::int) AS g
CROSS JOIN (SELECT * FROM jsonb_to_recordset($3::jsonb)
            AS x(k int, type text, at timestamptz, event_id text, body text)) AS t
ORDER BY g, t.k
"""


async def _generate(pool, events_wanted: int) -> int:
    lifecycle = await invoice_lifecycle(pool)
    invoice_id = lifecycle[0].subject
    templates = [
        {
            "k": i + 1,
            "type": e.type,
            "at": e.time.isoformat(),
            "event_id": e.id,
            "body": json.dumps(e.model_dump(mode="json", exclude_none=True)),
        }
        for i, e in enumerate(lifecycle)
    ]
    invoices = events_wanted // len(templates)
    progress(
        "rebuild",
        f"generating {invoices * len(templates):,} events ({invoices:,} invoices × "
        f"{', '.join(e.type for e in lifecycle)})",
    )
    t0 = time.perf_counter()
    async with pool.acquire() as conn:
        await conn.execute(GENERATE, invoice_id, invoices, templates, TENANT)  # the pool encodes jsonb
        await conn.execute("VACUUM ANALYZE events")
        total = await conn.fetchval("SELECT count(*) FROM events")
    progress("rebuild", f"{total:,} events in the store after {time.perf_counter() - t0:.0f} s")
    return total


# Reading is as fast at any position, so the baseline reads at most this many events.
READ_SAMPLE = 200_000


async def _read_only(pool) -> int:
    after, n = Checkpoint(), 0
    while n < READ_SAMPLE:
        async with pool.acquire() as conn:
            batch = await STORE.read_all(conn, after=after, limit=5000)
        if not batch:
            break
        n, after = n + len(batch), batch[-1].checkpoint
    return n


# Set by `--rebuild-events`; otherwise 1,000,000 (50,000 with --quick).
EVENTS: int | None = None


async def run(quick: bool, runs: int) -> list[Row]:
    wanted = EVENTS or (50_000 if quick else 1_000_000)
    if wanted >= 500_000 and runs > 2:
        runs = 2  # each pass over a million events takes minutes: two runs, median = mean
        progress("rebuild", "a large store: 2 runs")
    async with scratch_pool(INVOICING_MIGRATIONS, max_size=4) as (_, pool):
        total = await _generate(pool, wanted)
        rates, reads = [], []
        for i in range(runs):
            last = [0.0]

            def report(done: int, of: int, i: int = i, last: list[float] = last) -> None:
                if time.monotonic() - last[0] > 5:
                    last[0] = time.monotonic()
                    progress("rebuild", f"run {i + 1}/{runs}: {done:,}/{of:,} events")

            t0 = time.perf_counter()
            n = await rebuild(pool, STORE, InvoiceList(), on_progress=report)
            rates.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            n = await _read_only(pool)
            reads.append(n / (time.perf_counter() - t0))
            progress("rebuild", f"run {i + 1}/{runs}: rebuild {rates[-1]:,.0f} events/s, read only {reads[-1]:,.0f}/s")
        rows = await pool.fetchval("SELECT count(*) FROM invoice_list")
        progress("rebuild", f"invoice_list has {rows:,} rows")
    rate = median(rates)
    return [
        Row(
            "rebuild",
            f"invoice_list rebuild, {total:,} events",
            rate,
            "ev/s",
            median(reads),
            "read + decode only",
            "≥ 20,000 ev/s",
            rate >= TARGET_RATE,
        )
    ]
