"""A request that fails on a transient fault (the database restarting, a deadlock) answers 503
with Retry-After in the error shape, so a client retries; anything else unexpected stays a 500."""

import asyncpg
import httpx
from fastapi import FastAPI

from shared.http_errors import install_error_handlers


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/starting")
    async def starting() -> dict:
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    @app.get("/bug")
    async def bug() -> dict:
        raise KeyError("oops")

    return app


async def test_transient_faults_answer_503_with_retry_after():
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        busy = await client.get("/starting")
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert busy.json()["error"]["code"] == "service_unavailable"
        bug = await client.get("/bug")
        assert bug.status_code == 500 and bug.json()["error"]["code"] == "internal_error"
