"""NUL characters never reach a handler (PostgreSQL cannot store them): 404 in a path, 400 in a
query or a JSON body; everything else passes through untouched, body included."""

import httpx
import pytest
from fastapi import FastAPI, Request

from shared.guards import NulGuardMiddleware


def make_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(NulGuardMiddleware)

    @app.api_route("/echo/{name}", methods=["GET", "POST"])
    async def echo(name: str, request: Request) -> dict:
        return {"name": name, "q": request.query_params.get("q"), "body": (await request.body()).decode()}

    return app


@pytest.fixture
async def client():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://t") as c:
        yield c


async def test_nul_in_path_query_or_body_is_refused(client):
    assert (await client.get("/echo/a%00b")).status_code == 404
    refused = await client.get("/echo/a", params={"q": "x\x00y"})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "query"
    for body in (b'{"name": "Jane\\u0000"}', b'{"name": "\\\\\\u0000"}', b"raw\x00bytes"):
        answer = await client.post("/echo/a", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "parameter_invalid", body


async def test_everything_else_passes_with_its_body(client):
    body = '{"name": "backslash-u: \\\\u0000 is six characters", "city": "Kampala"}'
    answer = await client.post("/echo/a%20b", params={"q": "ok"}, content=body)
    assert answer.status_code == 200
    assert answer.json() == {"name": "a b", "q": "ok", "body": body}
