"""(1) Event store appends/s, single events and batches of 10, 1 and 16 concurrent writers,
against plain asyncpg INSERTs of the same rows into an equivalent table (no version check, lock,
outbox or notify: the physical limit of this database), in a scratch database."""

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from bench.env import scratch_pool
from bench.report import Row, progress
from bench.stats import latency_summary, median_of_runs
from shared.envelope import CloudEvent
from shared.eventstore import EventStore

PLAIN_TABLE = """
CREATE TABLE plain_events (
    position bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, stream_id text NOT NULL,
    stream_type text NOT NULL, version integer NOT NULL, event_type text NOT NULL,
    tenant_id text NOT NULL, occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(), envelope jsonb NOT NULL, UNIQUE (stream_id, version));
CREATE INDEX plain_events_tenant_type_idx ON plain_events (tenant_id, event_type);
"""
# Roughly an invoice snapshot's size, so row width is realistic.
DATA = {
    "invoice": {
        "id": "inv_x",
        "status": "DRAFT",
        "currency": "USD",
        "total": 180000,
        "items": [{"description": f"line {i}", "quantity": 1, "unitAmount": 1000} for i in range(8)],
    }
}
STORE = EventStore({"invoice": "billing.invoices"})


def _events(stream_id: str, n: int) -> list[CloudEvent]:
    return [
        CloudEvent.new(
            type="invoice.updated",
            source="/bench",
            subject=stream_id,
            tenant_id="ten_bench",
            data=DATA,
            correlation_id="bench",
        )
        for _ in range(n)
    ]


async def _store_writer(pool: asyncpg.Pool, batch: int, until: float, lat: list[float]) -> int:
    stream, version, written = f"inv_{uuid.uuid4().hex}", 0, 0
    async with pool.acquire() as conn:
        while time.perf_counter() < until:
            events = _events(stream, batch)
            t0 = time.perf_counter()
            async with conn.transaction():
                version = await STORE.append(conn, "invoice", stream, version, events)
            lat.append(time.perf_counter() - t0)
            written += batch
    return written


async def _plain_writer(pool: asyncpg.Pool, batch: int, until: float, lat: list[float]) -> int:
    stream, version, written = f"inv_{uuid.uuid4().hex}", 0, 0
    async with pool.acquire() as conn:
        while time.perf_counter() < until:
            events = _events(stream, batch)
            t0 = time.perf_counter()
            async with conn.transaction():
                await conn.executemany(
                    """INSERT INTO plain_events (event_id, stream_id, stream_type, version, event_type,
                                                 tenant_id, occurred_at, envelope)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                    [
                        (
                            e.id,
                            stream,
                            "invoice",
                            version + i + 1,
                            e.type,
                            e.tenantid,
                            datetime.now(UTC),
                            e.model_dump(mode="json", exclude_none=True),
                        )
                        for i, e in enumerate(events)
                    ],
                )
            version += batch
            lat.append(time.perf_counter() - t0)
            written += batch
    return written


async def _run(pool, writer, writers: int, batch: int, seconds: float) -> dict[str, float]:
    lat: list[float] = []
    until = time.perf_counter() + seconds
    started = time.perf_counter()
    counts = await asyncio.gather(*(writer(pool, batch, until, lat) for _ in range(writers)))
    elapsed = time.perf_counter() - started
    return {"rate": sum(counts) / elapsed, **latency_summary(lat)}


async def run(quick: bool, runs: int) -> list[Row]:
    seconds = 0.7 if quick else 3.0
    rows: list[Row] = []
    async with scratch_pool(max_size=20) as (_, pool):
        await pool.execute(PLAIN_TABLE)
        for writers in (1, 16):
            for batch in (1, 10):
                label = f"{'single' if batch == 1 else f'batch of {batch}'}, {writers} writer{'s' * (writers > 1)}"
                store_runs, plain_runs = [], []
                for i in range(runs):  # interleaved, so drift hits both alike
                    progress("appends", f"{label}: run {i + 1}/{runs}")
                    store_runs.append(await _run(pool, _store_writer, writers, batch, seconds))
                    plain_runs.append(await _run(pool, _plain_writer, writers, batch, seconds))
                s, p = median_of_runs(store_runs), median_of_runs(plain_runs)
                rows.append(
                    Row(
                        "appends",
                        f"events/s, {label}",
                        s["rate"],
                        "ev/s",
                        p["rate"],
                        "plain INSERT",
                        "≥ 0.50× plain INSERT",
                        s["rate"] >= 0.5 * p["rate"],
                    )
                )
                rows.append(Row("appends", f"append p50, {label}", s["p50"], "ms", p["p50"], "plain INSERT"))
                rows.append(Row("appends", f"append p99, {label}", s["p99"], "ms", p["p99"], "plain INSERT"))
    return rows
