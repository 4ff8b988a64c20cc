"""Token buckets in PostgreSQL: the burst passes, the next request waits, replicas share counts."""

import asyncio

import httpx
from fastapi import FastAPI

from shared.db import create_pool
from shared.ratelimit import Limit, RateLimitMiddleware, take


async def test_burst_then_refusal_with_retry_after_then_refill(pool):
    limit = Limit(rate=5, burst=3)
    assert [await take(pool, "key:a", limit) for _ in range(3)] == [None, None, None]
    assert await take(pool, "key:a", limit) == 1.0
    assert await take(pool, "key:b", limit) is None  # another key has its own bucket
    await asyncio.sleep(0.5)  # 2.5 tokens back, less the one the refusal took
    assert await take(pool, "key:a", limit) is None


async def test_two_replicas_draw_from_one_bucket(database, pool):
    other = await create_pool(database, max_size=5)  # a second process of the same service
    try:
        limit = Limit(rate=0.01, burst=10)
        results = await asyncio.gather(*(take(p, "key:shared", limit) for p in [pool, other] * 10))
        assert sum(r is None for r in results) == 10  # never 10 per replica
    finally:
        await other.close()


async def test_middleware_answers_429_in_the_error_shape(pool):
    app = FastAPI()

    @app.get("/api/things")
    async def things() -> dict:
        return {"ok": True}

    @app.get("/pay/{token}")
    async def pay(token: str) -> dict:
        return {"ok": True}

    app.add_middleware(RateLimitMiddleware, pool=lambda: pool, per_key=Limit(1, 2), per_address=Limit(1, 1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        key = {"Authorization": "Bearer sk_test_limits"}
        codes = [(await client.get("/api/things", headers=key)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        refused = await client.get("/api/things", headers=key)
        assert refused.headers["Retry-After"] == "1" and refused.json()["error"]["code"] == "rate_limited"
        # The hosted page counts per address, whatever key is sent.
        assert (await client.get("/pay/t", headers=key)).status_code == 200
        assert (await client.get("/pay/t", headers={"X-Forwarded-For": "203.0.113.9"})).status_code == 200
        assert (await client.get("/pay/t")).status_code == 429
        assert (await client.get("/health")).status_code == 404  # not limited (and not routed here)


async def test_a_forged_forwarded_for_does_not_buy_a_fresh_bucket(pool):
    app = FastAPI()

    @app.get("/pay/{token}")
    async def pay(token: str) -> dict:
        return {"ok": True}

    app.add_middleware(RateLimitMiddleware, pool=lambda: pool, per_key=Limit(1, 1), per_address=Limit(1, 1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        # What nginx forwards: the client's own header, then the peer nginx saw.
        codes = [
            (await client.get("/pay/t", headers={"X-Forwarded-For": f"10.0.0.{i}, 198.51.100.7"})).status_code
            for i in range(3)
        ]
        assert codes == [200, 429, 429]
