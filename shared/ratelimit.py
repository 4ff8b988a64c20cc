"""Rate limits: a token bucket per API key on the API, and per client address on the paths
nobody authenticates (/pay/*, /webhooks/*), kept in PostgreSQL so that every replica counts the
same requests (DESIGN rule 8). Over the limit: 429 with Retry-After and the one error shape.

One statement per request refills the bucket for the time that passed, takes a token and says
what is left; a refused request still takes its token (down to -1), so hammering never refills.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.auth import hash_key
from shared.http_errors import error_body

UNAUTHENTICATED = ("/pay/", "/webhooks/")
QUIET = ("/health", "/ready", "/metrics")

_TAKE = """
INSERT INTO rate_limits AS r (bucket, tokens, updated_at) VALUES ($1, $3 - 1, clock_timestamp())
ON CONFLICT (bucket) DO UPDATE SET
    tokens = GREATEST(LEAST($3, r.tokens + EXTRACT(EPOCH FROM clock_timestamp() - r.updated_at) * $2) - 1, -1),
    updated_at = clock_timestamp()
RETURNING tokens"""


@dataclass(frozen=True)
class Limit:
    rate: float  # tokens per second
    burst: int  # the bucket's size


async def take(pool: asyncpg.Pool, bucket: str, limit: Limit) -> float | None:
    """None if the request may go on; else the seconds until a token is back."""
    left: float = await pool.fetchval(_TAKE, bucket, limit.rate, float(limit.burst))
    if left >= 0:
        return None
    return max(1.0, math.ceil(-left / limit.rate))


def bucket_for(scope: Scope) -> tuple[str, bool] | None:
    """The bucket a request draws from, and whether it is a per-address one; None: not limited."""
    path = scope["path"]
    if path in QUIET:
        return None
    headers = Headers(scope=scope)
    if not path.startswith(UNAUTHENTICATED):
        auth = headers.get("authorization", "")
        key = auth.partition(" ")[2].strip() if auth.lower().startswith("bearer ") else headers.get("x-api-key")
        if key:
            return f"key:{hash_key(key)}", False
    # Behind the gateway the client is the last X-Forwarded-For address: nginx appends the peer it
    # saw, and anything before that came from the client, who could write anything there.
    forwarded = headers.get("x-forwarded-for", "").split(",")[-1].strip()
    client = forwarded or (scope.get("client") or ("unknown",))[0]
    return f"ip:{client}", True


_last_purge = 0.0


class RateLimitMiddleware:
    def __init__(
        self, app: ASGIApp, pool: Callable[[], asyncpg.Pool], per_key: Limit, per_address: Limit, enabled: bool = True
    ) -> None:
        self.app, self.pool, self.per_key, self.per_address, self.enabled = app, pool, per_key, per_address, enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = bucket_for(scope) if self.enabled and scope["type"] == "http" else None
        if chosen is None:
            return await self.app(scope, receive, send)
        bucket, by_address = chosen
        pool = self.pool()
        await _purge_idle(pool)
        wait = await take(pool, bucket, self.per_address if by_address else self.per_key)
        if wait is None:
            return await self.app(scope, receive, send)
        who = "this address" if by_address else "this API key"
        refusal = JSONResponse(
            error_body("rate_limit_error", "rate_limited", f"Too many requests from {who}; retry after {wait:.0f} s."),
            429,
            headers={"Retry-After": f"{wait:.0f}"},
        )
        await refusal(scope, receive, send)


async def _purge_idle(pool: asyncpg.Pool) -> None:
    """Buckets idle for an hour are full again anyway: drop them, at most once a minute."""
    global _last_purge
    if time.monotonic() - _last_purge > 60:
        _last_purge = time.monotonic()
        await pool.execute("DELETE FROM rate_limits WHERE updated_at < now() - interval '1 hour'")
