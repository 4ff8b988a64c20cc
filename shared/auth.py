"""API keys: generated once, stored only as SHA-256 hashes, checked against the local projection.

Keys are 256-bit random tokens, so a fast hash is the right tool (no password stretching needed).
Tenant and key events travel on `billing.tenants`; every service projects them into its own
`tenants` and `api_keys` tables, so no service reads another's database to authenticate.
"""

import hashlib
import secrets
from datetime import datetime

import asyncpg
from fastapi import Request

from shared.envelope import CloudEvent
from shared.errors import AuthenticationError

TENANTS_TOPIC = "billing.tenants"
TENANT_EVENTS = ("tenant.created", "api_key.created", "api_key.revoked")


def generate_key(mode: str = "test") -> str:
    if mode not in ("test", "live"):
        raise ValueError("mode must be test or live")
    return f"sk_{mode}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_from_request(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


async def tenant_for_key(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> str | None:
    return await conn.fetchval(
        "SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(key)
    )


async def key_owner(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> tuple[str, str] | None:
    """(tenant id, key mode) of an active key; None for an unknown or revoked one."""
    row = await conn.fetchrow(
        "SELECT tenant_id, mode FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(key)
    )
    return (row["tenant_id"], row["mode"]) if row else None


async def authenticate(request: Request, pool: asyncpg.Pool) -> str:
    key = key_from_request(request)
    if not key:
        raise AuthenticationError(
            "api_key_missing",
            "No API key provided. Send 'Authorization: Bearer sk_test_...' or 'X-API-Key'.",
        )
    tenant_id = await tenant_for_key(pool, key)
    if tenant_id is None:
        raise AuthenticationError("api_key_invalid", "Invalid or revoked API key.")
    return tenant_id


async def project_tenant_event(conn: asyncpg.Connection, event: CloudEvent) -> None:
    """Inbox handler for billing.tenants: keep this service's tenants and api_keys current."""
    data = event.data
    if event.type == "tenant.created":
        await conn.execute(
            """INSERT INTO tenants (tenant_id, name, created_at) VALUES ($1, $2, $3)
               ON CONFLICT (tenant_id) DO NOTHING""",
            event.tenantid, data["name"], event.time,
        )
    elif event.type == "api_key.created":
        await conn.execute(
            """INSERT INTO api_keys (key_id, tenant_id, key_hash, prefix, mode, created_at)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_id) DO NOTHING""",
            data["keyId"], event.tenantid, data["keyHash"], data["prefix"], data["mode"], event.time,
        )
    elif event.type == "api_key.revoked":
        # Revocation may arrive before creation (different partitions): record it either way.
        revoked_at: datetime = event.time
        await conn.execute(
            """INSERT INTO api_keys (key_id, tenant_id, key_hash, prefix, mode, created_at, revoked_at)
               VALUES ($1, $2, $3, '', '', $4, $4)
               ON CONFLICT (key_id) DO UPDATE SET revoked_at = EXCLUDED.revoked_at""",
            data["keyId"], event.tenantid, "revoked:" + data["keyId"], revoked_at,
        )
