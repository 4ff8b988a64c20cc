"""Idempotency-Key on payments' POSTs that write their row directly, not through the event store
(provider accounts, payment methods): a process killed after the row committed but before the
answer was kept never lets a retry with the same key write a second row."""

import asyncio

import httpx
import pytest

from tests.support.payments_server import start_payments_server, stop_payments_server

WRITES = {
    "provider account": (
        "/api/payment-providers",
        "provider_accounts",
        {
            "provider": "stripe",
            "currencies": ["USD"],
            "credentials": {"secretKey": "sk_test_x", "webhookSecret": "whsec_x"},
        },
    ),
    "payment method": (
        "/api/payment-methods",
        "payment_methods",
        {"customerId": "cust_1", "type": "card", "number": "4242424242424242"},
    ),
}


@pytest.mark.parametrize("what", WRITES)
async def test_a_crash_after_the_row_committed_never_writes_it_twice(database, kafka, monkeypatch, what):
    path, table, body = WRITES[what]
    key = {"Idempotency-Key": "once-1"}
    monkeypatch.setenv("BILLSTREAM_IDEMPOTENCY_LEASE_S", "1")  # the dead holder's lease lapses at once
    crashing = await start_payments_server(database, kafka, failpoints="idempotency.before_store")
    try:
        _, client = await crashing.tenant()
        with pytest.raises(httpx.TransportError):
            await client.post(path, json=body, headers=key)
        assert await crashing.proc.wait() == 137, "the failpoint was not reached"
    finally:
        await stop_payments_server(crashing)
    assert len(await crashing.fetch(f"SELECT 1 FROM {table}")) == 1  # committed; the answer was never kept

    restarted = await start_payments_server(database, kafka, run=crashing.run)
    try:
        async with httpx.AsyncClient(base_url=restarted.url, headers=dict(client.headers)) as api:
            await asyncio.sleep(1.2)  # well past the dead holder's lease
            for _ in range(2):
                r = await api.post(path, json=body, headers=key)
                assert (r.status_code, r.json()["error"]["code"]) == (409, "idempotency_key_committed"), r.text
    finally:
        await stop_payments_server(restarted)
    assert len(await restarted.fetch(f"SELECT 1 FROM {table}")) == 1
