"""Concurrency and rebuilds: two customers paying the same invoice at once cannot overpay it, and
the payment list can be dropped and rebuilt from the event store to the same rows."""

import asyncio
import json

import asyncpg
import httpx

from services.payments.projections.payment_list import PaymentList
from shared.db import create_pool
from shared.eventstore import EventStore
from shared.projections import rebuild
from tests.conftest import eventually
from tests.support.payments_server import invoice, payments_server  # noqa: F401


async def payable(server, invoice_id: str) -> None:
    """Wait until payments has consumed the invoice's event: reading right after publishing races it."""

    async def known():
        return await server.fetch("SELECT 1 FROM payable_invoices WHERE invoice_id = $1", invoice_id)

    await eventually(known)


async def test_two_simultaneous_full_payments_cannot_overpay(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    inv = invoice(total=50000)
    await server.publish_invoice(tenant, "invoice.finalized", inv)
    await payable(server, inv["id"])  # the event is consumed asynchronously
    checkout = (await client.post(f"/api/invoices/{inv['id']}/checkout", json={})).json()
    form = {"method": "card", "card_number": "4242424242424242"}
    async with httpx.AsyncClient() as a, httpx.AsyncClient() as b:
        answers = await asyncio.gather(*(c.post(checkout["checkoutUrl"], data=form) for c in (a, b, a, b)))
    assert sorted(r.status_code for r in answers) == [303, 400, 400, 400]
    errors = {r.text.split('id="error">')[1].split("<")[0] for r in answers if r.status_code == 400}
    assert errors == {"Nothing is left to pay on this invoice."}
    rows = await server.fetch("SELECT amount FROM invoice_payments WHERE invoice_id = $1", inv["id"])
    assert [r["amount"] for r in rows] == [50000]


async def test_payment_list_rebuilds_to_the_same_rows(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    await client.post(
        "/api/payment-methods", json={"customerId": "cust_1", "type": "card", "number": "4242424242424242"}
    )
    for total in (1000, 2000):
        inv = invoice(total=total)
        await server.publish_invoice(tenant, "invoice.finalized", inv)
        await payable(server, inv["id"])
        payment = (await client.post(f"/api/invoices/{inv['id']}/collect")).json()

        async def succeeded(pid=payment["id"]):
            return (await client.get(f"/api/payments/{pid}")).json()["status"] == "SUCCEEDED"

        await eventually(succeeded)
        r = await client.post(f"/api/payments/{payment['id']}/refund", json={"amount": 100, "reason": "Goodwill"})
        assert r.status_code == 201, r.text

    query = "SELECT payment_id, status, version, view FROM payment_list ORDER BY payment_id"

    async def settled_rows():
        rows = await server.fetch(query)
        return rows if len(rows) == 2 and all(r["status"] == "PARTIALLY_REFUNDED" for r in rows) else None

    before = [dict(r) for r in await eventually(settled_rows)]
    # Damage the read model first. Replay is an upsert guarded by version, so without a real
    # reset a row ahead of the store and a row no event made would both survive the rebuild.
    damaged = before[0]["payment_id"]
    await server.fetch(
        """UPDATE payment_list SET status = 'FAILED', version = version + 100,
                                 view = view || '{"status": "FAILED"}' WHERE payment_id = $1""",
        damaged,
    )
    await server.fetch(
        """INSERT INTO payment_list (payment_id, tenant_id, invoice_id, status, provider, amount,
                                                    currency, version, created_at, updated_at, view)
                          SELECT 'pay_phantom', tenant_id, invoice_id, status, provider, amount, currency,
                                 version, created_at, updated_at, view FROM payment_list WHERE payment_id = $1""",
        damaged,
    )
    pool = await create_pool(server.dsn)
    try:
        replayed = await rebuild(pool, EventStore({"payment": server.topics["payments"]}), PaymentList())
    finally:
        await pool.close()
    assert replayed >= 8  # created, processing, succeeded, refunded for each
    after = [dict(r) for r in await server.fetch(query)]
    assert after == before
    # Checked against the store itself, not only against the projection's own earlier rows:
    # each row is its payment's last event (its version and the snapshot it carries).
    last = await server.fetch(
        """SELECT DISTINCT ON (stream_id) stream_id, version, envelope->'data'->'payment' AS payment
           FROM events WHERE stream_type = 'payment' ORDER BY stream_id, version DESC"""
    )
    assert [r["payment_id"] for r in after] == [r["stream_id"] for r in last]
    for row, event in zip(after, last, strict=True):
        payment = json.loads(event["payment"]) if isinstance(event["payment"], str) else event["payment"]
        view = json.loads(row["view"]) if isinstance(row["view"], str) else row["view"]
        assert (row["version"], row["status"], view) == (event["version"], payment["status"], payment)


async def waiting_on_locks(server, at_least: int, timeout: float = 10.0) -> None:
    async def count():
        rows = await server.fetch("""SELECT count(*) AS n FROM pg_stat_activity
                                     WHERE datname = current_database() AND wait_event_type = 'Lock'""")
        return rows[0]["n"] >= at_least

    await eventually(count, timeout=timeout, interval=0.05)


async def test_concurrent_refunds_never_ask_the_provider_for_more_than_was_paid(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    inv = invoice(total=10000, currency="USD")
    await server.publish_invoice(tenant, "invoice.finalized", inv)
    await payable(server, inv["id"])
    await client.post(
        "/api/payment-methods", json={"customerId": "cust_1", "type": "card", "number": "4242424242424242"}
    )
    payment = (await client.post(f"/api/invoices/{inv['id']}/collect")).json()

    async def succeeded():
        return (await client.get(f"/api/payments/{payment['id']}")).json()["status"] == "SUCCEEDED"

    await eventually(succeeded)

    def refund(i: int):
        return client.post(f"/api/payments/{payment['id']}/refund", json={"amount": 3000, "reason": f"Refund {i}"})

    # Ten refunds of 3000 (30000 of a 10000 payment). To make the race certain, the first one's
    # recording transaction is held open (it marks the charge job done, a row we lock here) while
    # the nine others arrive: they must wait for it and then see its refund.
    holder = await asyncpg.connect(server.dsn)
    try:
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT 1 FROM charge_jobs WHERE payment_id = $1 FOR UPDATE", payment["id"])
        first = asyncio.create_task(refund(0))
        await waiting_on_locks(server, 1)  # the first refund is made at the provider, recording it waits
        others = [asyncio.create_task(refund(i)) for i in range(1, 10)]
        await waiting_on_locks(server, 5)
        await hold.rollback()
    finally:
        await holder.close()
    answers = [await first, *await asyncio.gather(*others)]

    acknowledged = [r for r in answers if r.status_code in (201, 202)]
    assert sum(r.json()["amount"] for r in acknowledged) <= 10000
    assert {r.json()["error"]["code"] for r in answers if r not in acknowledged} == {"refund_exceeds_payment"}, [
        r.text for r in answers
    ]
    asked = await server.fetch("SELECT amount FROM refund_jobs WHERE payment_id = $1", payment["id"])
    assert sum(j["amount"] for j in asked) <= 10000 and len(asked) == len(acknowledged) == 3
    refunded = await server.fetch("SELECT amount_refunded FROM sandbox_charges WHERE reference = $1", payment["id"])
    assert refunded[0]["amount_refunded"] == 9000
