"""Projections: incremental updates and a rebuild from the store give the same read model."""

import asyncio
from datetime import date, timedelta

from services.invoicing.domain.events import STREAM_TOPICS, registry
from services.invoicing.domain.invoice import CreateDraft, Invoice, ItemInput, decide_create
from services.invoicing.projections.invoice_list import InvoiceList
from shared.db import migrate
from shared.eventstore import EventStore
from shared.projections import ProjectionRunner, catch_up, rebuild
from services.invoicing.service import service as invoicing

store = EventStore(STREAM_TOPICS)


async def create_invoices(pool, n: int, offset: int = 0) -> None:
    for i in range(offset, offset + n):
        cmd = CreateDraft(invoice_id=f"inv_{i:04d}", customer_id=f"cust_{i % 7}", currency="NGN",
                          due_date=date(2026, 12, 1) + timedelta(days=i % 30),
                          items=(ItemInput("Plan", 1 + i % 3, 1000 + i),))
        events = [registry.new_event("invoice.created", e, source="/test", subject=cmd.invoice_id,
                                     tenant_id=f"ten_{i % 2}") for e in decide_create(Invoice(), cmd)]
        async with pool.acquire() as conn, conn.transaction():
            await store.append(conn, "invoice", cmd.invoice_id, 0, events)


async def snapshot(pool) -> list:
    return [dict(r) for r in await pool.fetch("SELECT * FROM invoice_list ORDER BY invoice_id")]


async def test_rebuilt_projection_equals_the_incremental_one(pool, database):
    await migrate(database, invoicing.migrations)
    projection = InvoiceList(store)
    runner = asyncio.create_task(ProjectionRunner(database, pool, store, [projection], poll_interval=0.1).run())
    try:
        await create_invoices(pool, 120)
        await asyncio.sleep(0.2)
        await create_invoices(pool, 80, offset=120)  # more while the runner is working

        async def caught_up():
            return await pool.fetchval("SELECT position FROM projection_checkpoints WHERE name = 'invoice_list'") \
                == await pool.fetchval("SELECT max(position) FROM events")

        from tests.conftest import eventually
        await eventually(caught_up)
    finally:
        runner.cancel()
    incremental = await snapshot(pool)
    assert len(incremental) == 200
    assert sum(r["total"] for r in incremental) == sum((1 + i % 3) * (1000 + i) for i in range(200))

    progress = []
    replayed = await rebuild(pool, store, projection, batch_size=64, on_progress=lambda d, t: progress.append((d, t)))
    assert replayed == 200 and progress[-1] == (200, progress[-1][1])
    assert await snapshot(pool) == incremental


async def test_catch_up_is_idempotent_and_moves_the_checkpoint(pool, database):
    await migrate(database, invoicing.migrations)
    projection = InvoiceList(store)
    await create_invoices(pool, 3)
    assert await catch_up(pool, store, projection) == 3
    assert await catch_up(pool, store, projection) == 0
    assert len(await snapshot(pool)) == 3
