"""Idempotency-Key for every POST: the same key with the same request replays the first answer;
the same key with another request is refused; a retry while the first is still running gets 409.
Answers of 5xx are not kept, so the client can retry them. Keys expire after 24 hours.
"""

import hashlib
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import hash_key, key_from_request
from shared.errors import error_body

HEADER = "Idempotency-Key"
TTL = "24 hours"


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
        body = await request.body()
        response = await self._answer(scope, body, hash_key(api_key), key)
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, body: bytes, owner: str, key: str) -> Response:
        pool = self.pool()
        request_hash = hashlib.sha256(scope["path"].encode() + b"\n" + body).hexdigest()
        await _purge_expired(pool)
        claimed = await pool.fetchval(
            """INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            owner, key, request_hash,
        )
        if not claimed:
            first = await pool.fetchrow(
                "SELECT request_hash, status, body, content_type FROM idempotency_keys WHERE scope = $1 AND key = $2",
                owner, key,
            )
            if first is None:  # expired between the two statements: treat as new next time
                return _refuse(409, "idempotency_key_in_use", "Retry the request.")
            if first["request_hash"] != request_hash:
                return _refuse(422, "idempotency_key_reused",
                               "This Idempotency-Key was used with a different request; use a new key.")
            if first["status"] is None:
                return _refuse(409, "idempotency_key_in_use",
                               "A request with this Idempotency-Key is still being processed; retry shortly.")
            return Response(first["body"], first["status"], media_type=first["content_type"],
                            headers={"Idempotent-Replayed": "true"})

        try:
            status, headers, content = await _run(self.app, scope, body)
        except BaseException:
            await pool.execute("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2", owner, key)
            raise
        if status >= 500:
            await pool.execute("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2", owner, key)
        else:
            await pool.execute(
                "UPDATE idempotency_keys SET status = $3, body = $4, content_type = $5 WHERE scope = $1 AND key = $2",
                owner, key, status, content, headers.get("content-type"),
            )
        return Response(content, status, headers={k: v for k, v in headers.items() if k != "content-length"})


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
