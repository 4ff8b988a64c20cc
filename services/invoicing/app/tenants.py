"""Tenants and their API keys (the `tenants` CLI). Tenant events reach every service through
billing.tenants, where each keeps its own table of keys (shared/auth.py)."""

import asyncpg

from shared.aggregate import Aggregates, Decided
from shared.auth import generate_key, hash_key
from shared.ids import new_id

from ..domain.tenant import NewKey, decide_create_key, decide_create_tenant, decide_revoke_key


class TenantHandlers:
    """Used by the `tenants` CLI; tenant events reach every service through billing.tenants."""

    def __init__(self, pool: asyncpg.Pool, aggregates: Aggregates) -> None:
        self.pool, self.aggregates = pool, aggregates

    async def create(self, name: str, mode: str = "test") -> tuple[str, str, str]:
        """Returns (tenant id, key id, the key itself: shown once, stored only hashed)."""
        key = generate_key(mode)
        tenant_id, key_id = new_id("ten"), new_id("key")
        events = decide_create_tenant(name, NewKey(key_id, hash_key(key), key[:12], mode))
        await self._append(tenant_id, 0, events)
        return tenant_id, key_id, key

    async def create_key(self, tenant_id: str, mode: str) -> tuple[str, str]:
        """Returns (key id, the key itself: shown once, stored only hashed)."""
        key, key_id = generate_key(mode), new_id("key")
        async with self.pool.acquire() as conn:
            stored = (await self.aggregates.load(conn, tenant_id)).stored
        exists = any(s.event.type == "tenant.created" for s in stored)  # not some other stream's id
        events = decide_create_key(exists, NewKey(key_id, hash_key(key), key[:12], mode))
        await self._append(tenant_id, len(stored), events)
        return key_id, key

    async def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        async with self.pool.acquire() as conn:
            stored = (await self.aggregates.load(conn, tenant_id)).stored
        known = {s.event.data["keyId"] for s in stored if s.event.type == "api_key.created"}
        revoked = {s.event.data["keyId"] for s in stored if s.event.type == "api_key.revoked"}
        events = decide_revoke_key(known, revoked, key_id)
        await self._append(tenant_id, len(stored), events)
        return bool(events)

    async def _append(self, tenant_id: str, version: int, events: Decided) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self.aggregates.append(conn, "tenant", tenant_id, version, events, tenant_id=tenant_id)
