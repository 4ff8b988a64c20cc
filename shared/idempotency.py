"""Idempotency-Key for every POST: the same key with the same request replays the first answer;
the same key with another request is refused; a retry while the first is still running gets 409.
Keys expire after 24 hours.

Only a request with a valid, active API key gets here (authentication comes first), and keys are
scoped to that tenant and key mode: a revoked key never gets a replay.

A crash never strands a key: the claim is a short lease renewed while the request runs, and a
retry after it lapsed takes over. The transaction that commits the request's work also marks the
claim committed (the event store's append does it, see `mark_committed`), so a retry of a request
whose work committed but whose answer was never stored is refused with 409
`idempotency_key_committed` instead of running twice. That answer cannot be rebuilt (it is built
after the commit), so the client fetches the resource: the one departure from "replays what
committed". A 5xx after committed work keeps the key the same way; a 5xx or crash before any
commit frees the key, so the retry runs again.
"""

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import asyncpg
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import key_from_request, key_owner
from shared.failpoints import failpoint
from shared.http_errors import error_body

HEADER = "Idempotency-Key"
TTL = "24 hours"
LEASE_S = float(os.environ.get("BILLSTREAM_IDEMPOTENCY_LEASE_S", "30"))  # tests shorten it

# The claim of the request being handled, (scope, key, claim id), for `mark_committed`.
current_claim: ContextVar[tuple[str, str, uuid.UUID] | None] = ContextVar("idempotency_claim", default=None)


class ClaimLost(Exception):
    """A retry took over this request's key (its lease lapsed): this work must not commit too."""


async def mark_committed(conn: asyncpg.Connection) -> None:
    """Called inside a transaction that commits the current request's work: marks its claim
    committed in that same transaction, so a retry never runs the work a second time. Raises
    (rolling the work back) if the claim is no longer this request's."""
    claim = current_claim.get()
    if claim is None:
        return
    ours = await conn.fetchval(
        "UPDATE idempotency_keys SET committed = true WHERE scope = $1 AND key = $2 AND claim = $3 RETURNING true",
        *claim,
    )
    if not ours:
        raise ClaimLost(f"{HEADER} {claim[1]!r} was taken over by a retry")


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(error_body("idempotency_error", code, message, HEADER), status)


_last_purge = 0.0


async def _purge_expired(pool: asyncpg.Pool) -> None:
    """Expired keys go at most once a minute per process, not on every request."""
    global _last_purge
    if time.monotonic() - _last_purge > 60:
        _last_purge = time.monotonic()
        await pool.execute(f"DELETE FROM idempotency_keys WHERE created_at < now() - interval '{TTL}'")


class IdempotencyMiddleware:
    """Pure ASGI, so requests without a key pass straight through at no cost."""

    def __init__(self, app: ASGIApp, pool: Callable[[], asyncpg.Pool]) -> None:
        self.app, self.pool = app, pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        key, api_key = request.headers.get(HEADER), key_from_request(request)
        if not key or not api_key:
            return await self.app(scope, receive, send)
        if len(key) > 255:
            refusal = _refuse(400, "idempotency_key_invalid", "Idempotency-Key must be at most 255 characters.")
            return await refusal(scope, receive, send)
        owner = await key_owner(self.pool(), api_key)
        if owner is None:  # unknown or revoked: the app answers 401; no row, no replay
            return await self.app(scope, receive, send)
        body = await request.body()
        response = await self._answer(scope, body, ":".join(owner), key)
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, body: bytes, owner: str, key: str) -> Response:
        pool = self.pool()
        request_hash = hashlib.sha256(scope["path"].encode() + b"\n" + body).hexdigest()
        await _purge_expired(pool)
        claim = uuid.uuid4()
        if not await _claim(pool, owner, key, request_hash, claim):
            return await _not_claimed(pool, owner, key, request_hash)
        ids = (owner, key, claim)
        failpoint("idempotency.after_claim")  # claimed, nothing committed yet
        token = current_claim.set(ids)
        renewing = asyncio.create_task(_renew(pool, ids))
        try:
            status, headers, content = await _run(self.app, scope, body)
        except BaseException:
            await _release(pool, ids)
            raise
        finally:
            renewing.cancel()
            current_claim.reset(token)
        failpoint("idempotency.before_store")  # the work committed, the answer not yet kept
        if status >= 500 or status == 401:  # 401: the key was revoked meanwhile; keep nothing for it
            await _release(pool, ids)
        else:
            await pool.execute(
                """UPDATE idempotency_keys SET status = $4, body = $5, content_type = $6
                   WHERE scope = $1 AND key = $2 AND claim = $3""",
                *ids,
                status,
                content,
                headers.get("content-type"),
            )
        return Response(content, status, headers={k: v for k, v in headers.items() if k != "content-length"})


async def _claim(pool: asyncpg.Pool, owner: str, key: str, request_hash: str, claim: uuid.UUID) -> bool:
    """A new key, an expired one (whatever it held: the purge only tidies), or one whose holder
    died before committing anything (lease lapsed): ours."""
    return bool(
        await pool.fetchval(
            f"""INSERT INTO idempotency_keys (scope, key, request_hash, claim, lease_until)
            VALUES ($1, $2, $3, $4, now() + interval '{LEASE_S} seconds')
            ON CONFLICT (scope, key) DO UPDATE SET claim = EXCLUDED.claim, lease_until = EXCLUDED.lease_until,
              request_hash = EXCLUDED.request_hash, status = NULL, body = NULL, content_type = NULL,
              committed = false, created_at = EXCLUDED.created_at
            WHERE idempotency_keys.created_at < now() - interval '{TTL}'
               OR (idempotency_keys.status IS NULL AND NOT idempotency_keys.committed
                   AND idempotency_keys.lease_until < now() AND idempotency_keys.request_hash = EXCLUDED.request_hash)
            RETURNING true""",
            owner,
            key,
            request_hash,
            claim,
        )
    )


async def _not_claimed(pool: asyncpg.Pool, owner: str, key: str, request_hash: str) -> Response:
    first = await pool.fetchrow(
        """SELECT request_hash, status, body, content_type, committed, lease_until < now() AS lapsed
           FROM idempotency_keys WHERE scope = $1 AND key = $2""",
        owner,
        key,
    )
    if first is None:  # expired between the two statements: treat as new next time
        return _refuse(409, "idempotency_key_in_use", "Retry the request.")
    if first["request_hash"] != request_hash:
        return _refuse(
            422, "idempotency_key_reused", "This Idempotency-Key was used with a different request; use a new key."
        )
    if first["status"] is not None:
        return Response(
            first["body"], first["status"], media_type=first["content_type"], headers={"Idempotent-Replayed": "true"}
        )
    if first["committed"] and first["lapsed"]:
        return _refuse(
            409,
            "idempotency_key_committed",
            "The earlier request with this Idempotency-Key did its work, but its answer was lost; "
            "fetch the resource instead of retrying.",
        )
    return _refuse(
        409, "idempotency_key_in_use", "A request with this Idempotency-Key is still being processed; retry shortly."
    )


async def _renew(pool: asyncpg.Pool, ids: tuple[str, str, uuid.UUID]) -> None:
    """Keep the lease while the request runs; a failed renewal is tried again next beat."""
    while True:
        await asyncio.sleep(LEASE_S / 3)
        with contextlib.suppress(Exception):
            await pool.execute(
                f"""UPDATE idempotency_keys SET lease_until = now() + interval '{LEASE_S} seconds'
                    WHERE scope = $1 AND key = $2 AND claim = $3""",
                *ids,
            )


async def _release(pool: asyncpg.Pool, ids: tuple[str, str, uuid.UUID]) -> None:
    """No answer to keep: free the key if nothing committed (the retry runs again); if work
    committed, end the lease so the retry hears `idempotency_key_committed` at once."""
    await pool.execute(
        """WITH gone AS (DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND claim = $3
                         AND NOT committed RETURNING 1)
           UPDATE idempotency_keys SET lease_until = now()
           WHERE scope = $1 AND key = $2 AND claim = $3 AND committed""",
        *ids,
    )


async def _run(app: ASGIApp, scope: Scope, body: bytes) -> tuple[int, Headers, bytes]:
    """Call the app with the body already read; collect its whole answer."""
    sent = False
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return start["status"], Headers(raw=start.get("headers", [])), b"".join(chunks)
