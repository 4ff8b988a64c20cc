"""Invoicing's optimistic concurrency against the real PostgreSQL: a command that lost the race
to another write on the same invoice reloads and decides again; one that keeps losing answers
409 `concurrent_update` and writes nothing."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.invoicing.app.invoices import Invoicing
from services.invoicing.domain import events as ev
from services.invoicing.service import service as invoicing
from shared.db import migrate
from shared.errors import Conflict, Refused
from shared.http_errors import status_of

TENANT = "ten_conc"


async def open_invoice(app: Invoicing) -> str:
    customer = (await app.create_customer(TENANT, ev.CustomerFields(name="Racer")))["id"]
    fields = ev.DraftFields(
        currency="UGX",
        due_date=datetime.now(UTC).date() + timedelta(days=30),
        allow_partial_payments=True,
        items=[ev.LineData(description="Plan", quantity=1, unit_amount=10000)],
    )
    view = await app.create_invoice(TENANT, customer, fields)
    await app.finalize(TENANT, view["id"])
    return view["id"]


async def pay(app: Invoicing, invoice_id: str, amount: int) -> dict:
    return await app.record_offline_payment(
        TENANT, invoice_id, amount=amount, method="cash", reference=None, paid_on=None
    )


async def test_a_command_that_lost_the_race_reloads_and_counts_both(pool, database):
    await migrate(database, invoicing.migrations)
    app, rival = Invoicing(pool, invoicing.aggregates), Invoicing(pool, invoicing.aggregates)
    invoice_id = await open_invoice(app)
    load, loads = app.load_invoice, []

    async def load_then_lose_the_race(conn, tenant, inv_id, **kw):
        state = await load(conn, tenant, inv_id, **kw)
        loads.append(state.version)
        if len(loads) == 1:  # another request pays in between: this decision is now stale
            await pay(rival, invoice_id, 3000)
        return state

    app.load_invoice = load_then_lose_the_race
    view = await pay(app, invoice_id, 2000)
    assert len(loads) == 2 and loads[1] == loads[0] + 1  # retried on the newer version
    assert (view["amountPaid"], view["amountDue"], view["status"]) == (5000, 5000, "PARTIALLY_PAID")
    versions = [
        r["version"]
        for r in await pool.fetch("SELECT version FROM events WHERE stream_id = $1 ORDER BY version", invoice_id)
    ]
    assert versions == list(range(1, len(versions) + 1))  # no gap, no duplicate


async def test_a_command_that_keeps_losing_answers_409_and_writes_nothing(pool, database):
    await migrate(database, invoicing.migrations)
    app = Invoicing(pool, invoicing.aggregates)
    invoice_id = await open_invoice(app)
    stale = await app.transact(lambda conn: app.load_invoice(conn, TENANT, invoice_id))
    await pay(app, invoice_id, 1000)  # the stream moves on
    before = await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", invoice_id)
    tries = []

    async def always_stale(conn, tenant, inv_id, **kw):
        tries.append(1)
        return stale

    app.load_invoice = always_stale
    with pytest.raises(Conflict) as err:
        await pay(app, invoice_id, 2000)
    assert (status_of(err.value), err.value.code) == (409, "concurrent_update")
    assert len(tries) == 5  # bounded retries, then the answer
    assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", invoice_id) == before


@pytest.mark.parametrize("invoice_first", [True, False])
async def test_a_customer_is_never_deleted_beside_a_new_invoice_for_them(pool, database, invoice_first):
    """Both commands read the customer and wait a moment before writing, as slow requests would;
    the first to start waits longest, so without the customer lock the second decides on what it
    read before the first committed (both commit: an invoice for a deleted customer). With the
    lock the first to start wins and the second sees its write."""
    await migrate(database, invoicing.migrations)
    writer, deleter = Invoicing(pool, invoicing.aggregates), Invoicing(pool, invoicing.aggregates)
    first_app, second_app = (writer, deleter) if invoice_first else (deleter, writer)
    for app, pause in ((first_app, 0.1), (second_app, 0.02)):
        load = app.load_customer

        async def load_slowly(conn, tenant, customer_id, _load=load, _pause=pause, **kw):
            state = await _load(conn, tenant, customer_id, **kw)
            await asyncio.sleep(_pause)
            return state

        app.load_customer = load_slowly
    fields = ev.DraftFields(currency="UGX", items=[ev.LineData(description="Plan", quantity=1, unit_amount=100)])
    for _ in range(5):
        customer = (await writer.create_customer(TENANT, ev.CustomerFields(name="Leaving")))["id"]
        commands = [writer.create_invoice(TENANT, customer, fields), deleter.delete_customer(TENANT, customer)]
        first = asyncio.create_task(commands.pop(0 if invoice_first else 1))
        await asyncio.sleep(0.01)  # the first has read the customer
        second = asyncio.create_task(commands.pop())
        results = await asyncio.gather(first, second, return_exceptions=True)
        made, deleted = results if invoice_first else results[::-1]
        if invoice_first:
            assert isinstance(made, dict) and isinstance(deleted, Conflict), (made, deleted)
            assert deleted.code == "customer_has_open_invoices"
        else:
            assert deleted is None and isinstance(made, Refused), (made, deleted)
            assert made.code == "customer_not_found"
