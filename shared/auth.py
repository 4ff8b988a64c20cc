"""API keys: generated once, stored only as SHA-256 hashes, checked against the local projection.

Keys are 256-bit random tokens, so a fast hash is the right tool (no password stretching needed).
Tenant and key events travel on `billing.tenants`; every service projects them into its own
`tenants` and `api_keys` tables, so no service reads another's database to authenticate.

Test mode and live mode are separate worlds, as in Stripe: a tenant's test keys act in its test
world, whose id is the tenant id with `_test` appended; live keys act under the bare tenant id.
Every row and event of a service is keyed by that world id, so a test key never sees or changes
a live object (404) and the reverse, with no query having to remember a mode filter. Rows from
before the modes existed sit under the bare id: live, the safe side (the sandbox never serves them).
"""

import hashlib
import secrets
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import Request

from shared.envelope import CloudEvent
from shared.errors import AuthenticationError

TENANT_EVENTS = ("tenant.created", "tenant.updated", "api_key.created", "api_key.revoked")


def generate_key(mode: str = "test") -> str:
    if mode not in ("test", "live"):
        raise ValueError("mode must be test or live")
    return f"sk_{mode}_{secrets.token_urlsafe(32)}"


TEST_SUFFIX = "_test"


def world(tenant_id: str, mode: str) -> str:
    """The id every row and event of this tenant's `mode` is keyed by."""
    return tenant_id + TEST_SUFFIX if mode == "test" else tenant_id


def livemode(world_id: str) -> bool:
    return not world_id.endswith(TEST_SUFFIX)


def with_livemode(view: dict[str, Any], world_id: str) -> dict[str, Any]:
    """A stored view (a read model's, an event's snapshot) as the API shows it: with its world's
    mode, which snapshots leave to the tenant id they are keyed by."""
    return {**view, "livemode": livemode(world_id)}


def tenant_of(world_id: str) -> str:
    """The tenant a world belongs to (its `tenants` row: name, branding)."""
    return world_id.removesuffix(TEST_SUFFIX)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_from_request(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


async def key_owner(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> tuple[str, str] | None:
    """(tenant id, key mode) of an active key; None for an unknown or revoked one."""
    row = await conn.fetchrow(
        "SELECT tenant_id, mode FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(key)
    )
    return (row["tenant_id"], row["mode"]) if row else None


async def authenticate(request: Request, pool: asyncpg.Pool) -> str:
    """The world id (tenant and mode) the request's key acts in; 401 without a valid key."""
    key = key_from_request(request)
    if not key:
        raise AuthenticationError(
            "api_key_missing",
            "No API key provided. Send 'Authorization: Bearer sk_test_...' or 'X-API-Key'.",
        )
    owner = await key_owner(pool, key)
    if owner is None:
        raise AuthenticationError("api_key_invalid", "Invalid or revoked API key.")
    return world(*owner)


async def tenant_name(conn: asyncpg.Connection | asyncpg.Pool, world_id: str) -> str | None:
    name: str | None = await conn.fetchval("SELECT name FROM tenants WHERE tenant_id = $1", tenant_of(world_id))
    return name


async def project_tenant_event(conn: asyncpg.Connection, event: CloudEvent) -> None:
    """Inbox handler for billing.tenants: keep this service's tenants and api_keys current."""
    data = event.data
    if event.type == "tenant.created":
        await conn.execute(
            """INSERT INTO tenants (tenant_id, name, created_at) VALUES ($1, $2, $3)
               ON CONFLICT (tenant_id) DO NOTHING""",
            event.tenantid,
            data["name"],
            event.time,
        )
    elif event.type == "tenant.updated":  # after its tenant.created: one stream, one partition
        await conn.execute("UPDATE tenants SET name = $2 WHERE tenant_id = $1", event.tenantid, data["name"])
    elif event.type == "api_key.created":
        await conn.execute(
            """INSERT INTO api_keys (key_id, tenant_id, key_hash, prefix, mode, created_at)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_id) DO NOTHING""",
            data["keyId"],
            event.tenantid,
            data["keyHash"],
            data["prefix"],
            data["mode"],
            event.time,
        )
    elif event.type == "api_key.revoked":
        # Revocation may arrive before creation (different partitions): record it either way.
        revoked_at: datetime = event.time
        await conn.execute(
            """INSERT INTO api_keys (key_id, tenant_id, key_hash, prefix, mode, created_at, revoked_at)
               VALUES ($1, $2, $3, '', '', $4, $4)
               ON CONFLICT (key_id) DO UPDATE SET revoked_at = EXCLUDED.revoked_at""",
            data["keyId"],
            event.tenantid,
            "revoked:" + data["keyId"],
            revoked_at,
        )
