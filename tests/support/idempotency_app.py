"""A minimal event-sourced HTTP app over the shared idempotency middleware, authentication and
event store, in its own process so a test can kill it at a failpoint (no Kafka needed):
`python -m tests.support.idempotency_app DSN PORT`. `POST /api/things` appends one event."""

import contextlib
import sys
import uuid

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from shared import auth
from shared.db import create_pool
from shared.eventstore import EventStore
from shared.http_errors import install_error_handlers
from shared.idempotency import IdempotencyMiddleware
from tests.support.events import make_event

DSN, PORT = sys.argv[1], int(sys.argv[2])
state: dict = {}
store = EventStore({"thing": "test.things"})


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI):
    state["pool"] = await create_pool(DSN)
    yield
    await state["pool"].close()


app = FastAPI(lifespan=lifespan)
install_error_handlers(app)
app.add_middleware(IdempotencyMiddleware, pool=lambda: state["pool"])


async def tenant(request: Request) -> str:
    return await auth.authenticate(request, state["pool"])


@app.get("/health")
async def health() -> dict:
    return {"ok": True}


@app.post("/api/things", status_code=201, response_model=None)
async def create_thing(
    fail_after_commit: bool = False,
    fail_before_commit: bool = False,
    unavailable: bool = False,
    tenant_id: str = Depends(tenant),
) -> dict | JSONResponse:
    if fail_before_commit:  # a bug before any work: nothing committed, the client gets a 500
        raise RuntimeError("the request could not be handled")
    if unavailable:  # a 5xx answered before any work (as when a provider is down)
        return JSONResponse({"error": {"code": "provider_unavailable"}}, 503)
    thing = f"thing_{uuid.uuid4().hex[:12]}"
    async with state["pool"].acquire() as conn, conn.transaction():
        await store.append(conn, "thing", thing, 0, [make_event(thing, tenant=tenant_id)])
    if fail_after_commit:  # a bug after the commit: the client gets a 500
        raise RuntimeError("answer could not be built")
    return {"id": thing}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_config=None, access_log=False)
