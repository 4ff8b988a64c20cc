"""Idempotency-Key for every POST: the same key with the same request replays the first answer;
the same key with another request is refused; a retry while the first is still running gets 409.
Answers of 5xx are not kept, so the client can retry them. Keys expire after 24 hours.
"""

import hashlib
import time

import asyncpg
from fastapi import Request, Response
from fastapi.responses import JSONResponse

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


async def idempotent(request: Request, call_next, pool: asyncpg.Pool) -> Response:
    key, api_key = request.headers.get(HEADER), key_from_request(request)
    if request.method != "POST" or not key or not api_key:
        return await call_next(request)
    if len(key) > 255:
        return _refuse(400, "idempotency_key_invalid", "Idempotency-Key must be at most 255 characters.")
    scope = hash_key(api_key)
    body = await request.body()
    request_hash = hashlib.sha256(request.url.path.encode() + b"\n" + body).hexdigest()
    await _purge_expired(pool)
    claimed = await pool.fetchval(
        """INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        scope, key, request_hash,
    )
    if not claimed:
        first = await pool.fetchrow(
            "SELECT request_hash, status, body, content_type FROM idempotency_keys WHERE scope = $1 AND key = $2",
            scope, key,
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
        response = await call_next(request)
    except BaseException:
        await pool.execute("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2", scope, key)
        raise
    chunks = [chunk async for chunk in response.body_iterator]
    content = b"".join(chunks)
    if response.status_code >= 500:
        await pool.execute("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2", scope, key)
    else:
        await pool.execute(
            "UPDATE idempotency_keys SET status = $3, body = $4, content_type = $5 WHERE scope = $1 AND key = $2",
            scope, key, response.status_code, content, response.headers.get("content-type"),
        )
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(content, response.status_code, headers=headers)
