"""Idempotency-Key through the real webhooks service process: a crash never strands a key and never
runs a request twice, and only a valid key of the same tenant reaches the idempotency layer."""

import asyncio
import contextlib

import asyncpg
import httpx
import pytest

from shared.auth import tenant_of
from tests.conftest import eventually
from tests.support import processes
from tests.support.webhooks_service import add_tenant, start_webhooks  # noqa: F401 - fixture

LEASE = {"BILLSTREAM_IDEMPOTENCY_LEASE_S": "1"}
BODY = {"url": "http://127.0.0.1:9/hook", "description": "retried"}


async def restart(svc, **env: str) -> None:
    """The same service on the same database again, with these environment variables."""
    await svc.stop()
    svc.env = {**svc.env, "BILLSTREAM_FAILPOINTS": "", **env}
    await svc.start()


async def crash_on(svc, failpoint: str, key: str, api_key: str) -> None:
    """Restart the service armed with `failpoint`; the POST with `key` kills it there."""
    await restart(svc, BILLSTREAM_FAILPOINTS=failpoint, **LEASE)
    async with svc.client(api_key) as api:
        with pytest.raises(httpx.TransportError):
            await api.post("/api/webhook-endpoints", json=BODY, headers={"Idempotency-Key": key})
    assert await svc.proc.wait() == 137, "the failpoint was not reached"
    await restart(svc, **LEASE)


async def endpoints(dsn: str, tenant: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1", tenant)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def things_app(database: str, failpoints: str = ""):
    """tests/support/idempotency_app.py in a child process (with a 1 s lease): POST /api/things
    appends one event."""
    port = processes.free_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BILLSTREAM_IDEMPOTENCY_LEASE_S", "1")
        proc = await processes.spawn("tests.support.idempotency_app", database, str(port), failpoints=failpoints)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            await eventually(lambda: healthy(client), timeout=30)
        yield proc, url
    finally:
        await processes.stop(proc)


async def healthy(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health")).status_code == 200
    except httpx.TransportError:
        return False


async def things(dsn: str, tenant: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM events WHERE stream_type = 'thing' AND tenant_id = $1", tenant)
    finally:
        await conn.close()


async def test_crash_between_commit_and_answer_never_runs_twice(database):
    tenant, key = await add_tenant(database, "Acme Uganda")
    auth = {"Authorization": f"Bearer {key}", "Idempotency-Key": "crash-1"}
    async with things_app(database, "idempotency.before_store") as (proc, url):
        with pytest.raises(httpx.TransportError):
            await httpx.AsyncClient(base_url=url).post("/api/things", json={}, headers=auth)
        assert await proc.wait() == 137, processes.output(proc)
    assert await things(database, tenant) == 1  # the work committed, the answer was never kept

    async with things_app(database) as (_, url), httpx.AsyncClient(base_url=url) as api:
        await asyncio.sleep(1.2)  # long after the dead holder's lease: not "in use" any more
        for _ in range(2):
            r = await api.post("/api/things", json={}, headers=auth)
            assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_key_committed", r.text
            assert "fetch" in r.json()["error"]["message"]
    assert await things(database, tenant) == 1


async def test_a_5xx_before_any_work_is_not_kept_and_the_retry_runs(database):
    """A 500 from a bug and a 503 answered before any work leave the key free: the retry runs."""
    tenant, key = await add_tenant(database, "Acme Uganda")
    auth = {"Authorization": f"Bearer {key}", "Idempotency-Key": "boom-0"}
    async with things_app(database) as (_, url):
        for_each = {"base_url": url, "headers": auth}  # a new connection each: uvicorn closes it after a 500
        async with httpx.AsyncClient(**for_each) as api:
            assert (await api.post("/api/things?fail_before_commit=true", json={})).status_code == 500
        async with httpx.AsyncClient(**for_each) as api:
            assert (await api.post("/api/things?unavailable=true", json={})).status_code == 503
        async with httpx.AsyncClient(**for_each) as api:
            r = await api.post("/api/things?unavailable=true", json={})
        assert r.status_code == 503 and "idempotent-replayed" not in r.headers  # answered again, not replayed
        assert await things(database, tenant) == 0
        async with httpx.AsyncClient(**for_each) as api:
            r = await api.post("/api/things", json={})
        assert r.status_code == 201 and "idempotent-replayed" not in r.headers, r.text  # ran, not replayed
        async with httpx.AsyncClient(**for_each) as api:
            again = await api.post("/api/things", json={})
        assert again.status_code == 201 and again.json() == r.json() and again.headers["idempotent-replayed"] == "true"
    assert await things(database, tenant) == 1


async def test_a_5xx_after_committed_work_does_not_free_the_key(database):
    tenant, key = await add_tenant(database, "Acme Uganda")
    auth = {"Authorization": f"Bearer {key}", "Idempotency-Key": "boom-1"}
    async with things_app(database) as (_, url):
        for_each = {"base_url": url, "headers": auth}  # a new connection each: uvicorn closes it after a 500
        async with httpx.AsyncClient(**for_each) as api:
            assert (await api.post("/api/things?fail_after_commit=true", json={})).status_code == 500
        async with httpx.AsyncClient(**for_each) as api:
            r = await api.post("/api/things?fail_after_commit=true", json={})
        assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_key_committed", r.text
    assert await things(database, tenant) == 1


async def test_claim_of_a_dead_process_is_taken_over_after_its_lease(start_webhooks, database):
    svc = await start_webhooks()
    tenant, key = await add_tenant(database, "Acme Uganda")
    await crash_on(svc, "idempotency.after_claim", "dead-1", key)
    assert await endpoints(database, tenant) == 0  # died holding the claim, nothing committed

    async with svc.client(key) as api:
        await asyncio.sleep(1.2)  # the dead holder's lease lapses
        first = await api.post("/api/webhook-endpoints", json=BODY, headers={"Idempotency-Key": "dead-1"})
        assert first.status_code == 201, first.text
        again = await api.post("/api/webhook-endpoints", json=BODY, headers={"Idempotency-Key": "dead-1"})
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers.get("idempotent-replayed") == "true"
    assert await endpoints(database, tenant) == 1


async def test_only_an_active_key_of_the_same_tenant_reaches_idempotency(start_webhooks, database):
    svc = await start_webhooks()
    tenant, key = await add_tenant(database, "Acme Uganda")
    _, other_tenant_key = await add_tenant(database, "Other Ltd")
    conn = await asyncpg.connect(database)
    try:
        # An unknown key: 401, and no idempotency row written.
        async with svc.client("sk_test_unknown") as stranger:
            r = await stranger.post("/api/webhook-endpoints", json=BODY, headers={"Idempotency-Key": "k-1"})
        assert r.status_code == 401
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 0

        async with svc.client(key) as api:
            first = await api.post("/api/webhook-endpoints", json=BODY, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == 201 and first.json()["secret"].startswith("whsec_")

        # Another tenant's same Idempotency-Key is its own: a new endpoint, not our answer.
        async with svc.client(other_tenant_key) as other:
            theirs = await other.post("/api/webhook-endpoints", json=BODY, headers={"Idempotency-Key": "k-1"})
        assert theirs.status_code == 201 and theirs.headers.get("idempotent-replayed") is None
        assert theirs.json()["id"] != first.json()["id"]

        # A revoked key gets 401, never the stored answer with the one-time secret.
        await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1", tenant_of(tenant))
        async with svc.client(key) as api:
            r = await api.post("/api/webhook-endpoints", json=BODY, headers={"Idempotency-Key": "k-1"})
        assert r.status_code == 401 and "whsec_" not in r.text
        assert await endpoints(database, tenant) == 1
    finally:
        await conn.close()


async def test_a_key_expires_after_24_hours_even_before_it_is_purged(start_webhooks, database):
    """Past 24 hours the key is new again (Stripe's rule): the same request runs anew and another
    request may use it, although the once-a-minute purge has not removed the row yet."""
    svc = await start_webhooks()
    _, key = await add_tenant(database, "Acme Uganda")
    other = {**BODY, "description": "another request"}
    conn = await asyncpg.connect(database)
    try:
        async with svc.client(key) as api:
            first = await api.post("/api/webhook-endpoints", json=BODY, headers={"Idempotency-Key": "old-1"})
            assert first.status_code == 201, first.text
            r = await api.post("/api/webhook-endpoints", json=other, headers={"Idempotency-Key": "old-1"})
            assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_reused"

            await conn.execute(
                "UPDATE idempotency_keys SET created_at = now() - interval '24 hours 1 minute' WHERE key = 'old-1'"
            )
            again = await api.post("/api/webhook-endpoints", json=BODY, headers={"Idempotency-Key": "old-1"})
            assert again.status_code == 201 and again.headers.get("idempotent-replayed") is None
            assert again.json()["id"] != first.json()["id"]
            replay = await api.post("/api/webhook-endpoints", json=BODY, headers={"Idempotency-Key": "old-1"})
            assert replay.headers.get("idempotent-replayed") == "true" and replay.json() == again.json()
    finally:
        await conn.close()
