"""Projections: incremental updates and a rebuild from the store give the same read model."""

import asyncio
from datetime import date, timedelta

from services.invoicing.app.invoices import Invoicing
from services.invoicing.domain import events as ev
from services.invoicing.domain.events import STREAM_TOPICS
from services.invoicing.projections.invoice_list import CustomerList, InvoiceList
from services.invoicing.service import service as invoicing
from shared.db import migrate
from shared.eventstore import EventStore
from shared.projections import ProjectionRunner, catch_up, rebuild
from tests.conftest import caught_up, eventually

store = EventStore(STREAM_TOPICS)
LINE = ev.LineData(description="Plan", quantity=1, unit_amount=1000)


async def create_invoices(app: Invoicing, customers: list[str], n: int, offset: int = 0) -> None:
    for i in range(offset, offset + n):
        fields = ev.DraftFields(
            currency="NGN",
            due_date=date(2026, 12, 1) + timedelta(days=i % 30),
            items=[ev.LineData(description="Plan", quantity=1 + i % 3, unit_amount=1000 + i)],
        )
        view = await app.create_invoice("ten_0", customers[i % len(customers)], fields)
        if i % 4 == 0:
            await app.finalize("ten_0", view["id"])
        elif i % 25 == 1:
            await app.delete("ten_0", view["id"])


async def snapshot(pool, table: str) -> list:
    return [dict(r) for r in await pool.fetch(f"SELECT * FROM {table} ORDER BY 1")]


def live(rows: list) -> list:
    """The rows a list shows: not the tombstones deletions leave."""
    return [r for r in rows if not r["deleted"]]


async def test_rebuilt_projection_equals_the_incremental_one(pool, database):
    await migrate(database, invoicing.migrations)
    app = Invoicing(pool, invoicing.aggregates)
    projections = [InvoiceList(), CustomerList()]
    runner = asyncio.create_task(ProjectionRunner(database, pool, store, projections, poll_interval=0.1).run())
    try:
        customers = [
            (await app.create_customer("ten_0", ev.CustomerFields(name=f"Customer {i}")))["id"] for i in range(3)
        ]
        await create_invoices(app, customers, 60)
        await create_invoices(app, customers, 40, offset=60)  # more while the runner is working

        async def caught_up():
            checkpoints = await pool.fetch("SELECT transaction_id, position FROM projection_checkpoints")
            last = await pool.fetchrow(
                "SELECT transaction_id, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1"
            )
            return len(checkpoints) == 2 and all(tuple(c) == tuple(last) for c in checkpoints)

        await eventually(caught_up)
    finally:
        runner.cancel()
    incremental = await snapshot(pool, "invoice_list")
    kept = [i for i in range(100) if i % 4 == 0 or i % 25 != 1]  # drafts 1, 26 and 51 were deleted
    assert len(live(incremental)) == len(kept) == 97 and len(incremental) == 100
    assert sum(r["total"] for r in live(incremental)) == sum((1 + i % 3) * (1000 + i) for i in kept)
    assert sum(r["status"] == "PENDING" for r in live(incremental)) == 25
    customers_before = await snapshot(pool, "customer_list")
    # Damage both read models first: replay is an upsert, so only a real reset removes a row
    # that no event made (a changed row would be overwritten by the replay anyway).
    await pool.execute("UPDATE invoice_list SET total = total + 1 WHERE invoice_id = $1", incremental[0]["invoice_id"])
    await pool.execute(
        """INSERT INTO invoice_list SELECT 'inv_phantom', tenant_id, number, status, customer_id,
                              customer_name, customer_email, reference, currency, total, amount_paid, amount_due,
                              due_date, created_at, updated_at, search, view FROM invoice_list WHERE invoice_id = $1""",
        incremental[0]["invoice_id"],
    )
    await pool.execute(
        """INSERT INTO customer_list SELECT 'cus_phantom', tenant_id, name, email, created_at, search, view
                          FROM customer_list WHERE customer_id = $1""",
        customers_before[0]["customer_id"],
    )

    progress = []
    replayed = await rebuild(
        pool, store, projections[0], batch_size=64, on_progress=lambda d, t: progress.append((d, t))
    )
    assert replayed == await pool.fetchval("SELECT count(*) FROM events") and progress[-1][0] == replayed
    assert await snapshot(pool, "invoice_list") == incremental
    await rebuild(pool, store, projections[1])
    assert await snapshot(pool, "customer_list") == customers_before


async def test_catch_up_is_idempotent_and_moves_the_checkpoint(pool, database):
    await migrate(database, invoicing.migrations)
    app = Invoicing(pool, invoicing.aggregates)
    customer = (await app.create_customer("ten_0", ev.CustomerFields(name="C")))["id"]
    await create_invoices(app, [customer], 3)
    projection = InvoiceList()
    events = await pool.fetchval("SELECT count(*) FROM events")
    assert await caught_up(pool, store, projection) == events
    assert await catch_up(pool, store, projection) == 0
    assert len(live(await snapshot(pool, "invoice_list"))) == 2  # invoice 1 was deleted


async def test_rebuild_while_the_runner_is_active_ends_consistent(pool, database):
    """A rebuild (reset, then replay) while the runner keeps the same projection up to date and
    invoices keep being written: the runner must not move the checkpoint between the reset of the
    rows and the reset of the checkpoint, or rows are lost for good. Checked against what was
    written, not against the projection itself."""
    await migrate(database, invoicing.migrations)
    app = Invoicing(pool, invoicing.aggregates)
    raced: list[asyncio.Task] = []

    class RacedInvoiceList(InvoiceList):
        async def reset(self, conn):
            """Another runner's catch-up starts right as the rows are reset, and gets up to a second
            to get through first: with the reset and the checkpoint in one locked transaction it
            has to wait, so this interleaving is forced, not left to chance."""
            if not raced:
                raced.append(asyncio.create_task(catch_up(pool, store, InvoiceList())))
                await asyncio.wait(raced, timeout=1)
            await super().reset(conn)

    customer = (await app.create_customer("ten_0", ev.CustomerFields(name="Busy Customer")))["id"]
    await create_invoices(app, [customer], 30)
    runner = asyncio.create_task(ProjectionRunner(database, pool, store, [InvoiceList()], poll_interval=0.1).run())
    try:
        writer = asyncio.create_task(create_invoices(app, [customer], 70, offset=30))
        rebuilds = 0
        while not writer.done() or rebuilds < 10:
            await pool.execute("""INSERT INTO invoice_list SELECT 'inv_phantom', tenant_id, number, status, customer_id,
                                      customer_name, customer_email, reference, currency, total, amount_paid, amount_due,
                                      due_date, created_at, updated_at, search, view FROM invoice_list LIMIT 1
                                  ON CONFLICT DO NOTHING""")
            await rebuild(pool, store, InvoiceList(), batch_size=40)
            rebuilds += 1
        await writer
        await rebuild(pool, store, RacedInvoiceList(), batch_size=40)  # the last word: nothing repairs it after
        await raced[0]

        async def caught_up():
            checkpoint = await pool.fetchrow("SELECT transaction_id, position FROM projection_checkpoints")
            last = await pool.fetchrow(
                "SELECT transaction_id, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1"
            )
            return tuple(checkpoint) == tuple(last)

        await eventually(caught_up)
    finally:
        runner.cancel()
    rows = live(await snapshot(pool, "invoice_list"))
    kept = [i for i in range(100) if i % 4 == 0 or i % 25 != 1]  # drafts 1, 26 and 51 were deleted
    assert sorted(r["total"] for r in rows) == sorted((1 + i % 3) * (1000 + i) for i in kept)
    assert sum(r["status"] == "PENDING" for r in rows) == 25
    assert not [r for r in rows if r["invoice_id"] == "inv_phantom"]


async def test_rows_are_written_with_the_command_and_a_late_older_snapshot_never_takes_them_back(pool, database):
    """Each command writes its read-model rows in its own transaction; the runner applies the same
    events again later, and may meet a stream's versions out of order. An older snapshot never
    takes a row back, and a deleted invoice's row stays a tombstone."""
    await migrate(database, invoicing.migrations)
    app = Invoicing(pool, invoicing.aggregates)
    customer = await app.create_customer("ten_0", ev.CustomerFields(name="Before"))
    await app.update_customer("ten_0", customer["id"], ev.CustomerFields(name="After"))
    kept = await app.create_invoice("ten_0", customer["id"], ev.DraftFields(currency="NGN", items=[LINE]))
    await app.finalize("ten_0", kept["id"])
    gone = await app.create_invoice("ten_0", customer["id"], ev.DraftFields(currency="NGN", items=[LINE]))
    await app.delete("ten_0", gone["id"])
    # No runner has run: these rows are the commands' own.
    rows = {r["invoice_id"]: r for r in await snapshot(pool, "invoice_list")}
    assert (rows[kept["id"]]["status"], rows[kept["id"]]["version"], rows[kept["id"]]["deleted"]) == (
        "PENDING",
        2,
        False,
    )
    assert (rows[gone["id"]]["version"], rows[gone["id"]]["deleted"]) == (2, True)
    assert [(r["name"], r["version"]) for r in await snapshot(pool, "customer_list")] == [("After", 2)]

    async with pool.acquire() as conn, conn.transaction():
        for stream_id, projection in (
            (kept["id"], InvoiceList()),
            (gone["id"], InvoiceList()),
            (customer["id"], CustomerList()),
        ):
            first = (await store.read_stream(conn, stream_id))[0]
            await projection.apply_batch(conn, [first])  # the stream's first snapshot, applied last
    assert await snapshot(pool, "invoice_list") == list(rows.values())  # nothing moved back
    assert [r["name"] for r in await snapshot(pool, "customer_list")] == ["After"]
    assert await caught_up(pool, store, InvoiceList()) > 0  # the runner's pass changes nothing either
    assert await snapshot(pool, "invoice_list") == list(rows.values())
