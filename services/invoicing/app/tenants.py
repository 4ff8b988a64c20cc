"""Tenants and their API keys, for the `tenants` CLI and /api/tenants/me. Tenant events reach
every service through billing.tenants, where each keeps its own table of keys (shared/auth.py);
invoicing also writes its own table in the appending transaction, so a key made or revoked here
acts here at once (the other services follow as soon as they hear the event)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared import auth
from shared.aggregate import Aggregates, Decided
from shared.auth import generate_key, hash_key
from shared.envelope import CloudEvent
from shared.ids import new_id

from ..domain.tenant import NewKey, decide_create_key, decide_create_tenant, decide_rename, decide_revoke_key


@dataclass(frozen=True)
class Key:
    key_id: str
    prefix: str
    mode: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class TenantState:
    exists: bool
    name: str
    created_at: datetime | None
    keys: dict[str, Key]  # by id, oldest first


def fold(stored) -> TenantState:
    """The tenant's stream, as its name and keys."""
    name, created, keys = "", None, {}
    for s in stored:
        e = s.event
        if e.type == "tenant.created":
            name, created = e.data["name"], e.time
        elif e.type == "tenant.updated":
            name = e.data["name"]
        elif e.type == "api_key.created":
            keys[e.data["keyId"]] = Key(e.data["keyId"], e.data["prefix"], e.data["mode"], e.time)
        elif e.type == "api_key.revoked" and e.data["keyId"] in keys:
            k = keys[e.data["keyId"]]
            keys[k.key_id] = Key(k.key_id, k.prefix, k.mode, k.created_at, k.revoked_at or e.time)
    return TenantState(created is not None, name, created, keys)


ProjectKeys = Callable[[Any, CloudEvent], Awaitable[None]]


class TenantHandlers:
    def __init__(
        self, pool: asyncpg.Pool, aggregates: Aggregates, project: ProjectKeys | None = auth.project_tenant_event
    ) -> None:
        """`project`: writes this service's tenants and api_keys rows from an event (None: leave
        them to billing.tenants, for a store without those tables)."""
        self.pool, self.aggregates, self.project = pool, aggregates, project

    async def state(self, tenant_id: str) -> tuple[TenantState, int]:
        async with self.pool.acquire() as conn:
            stored = (await self.aggregates.load(conn, tenant_id)).stored
        return fold(stored), len(stored)

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
        state, version = await self.state(tenant_id)
        events = decide_create_key(state.exists, NewKey(key_id, hash_key(key), key[:12], mode))
        await self._append(tenant_id, version, events)
        return key_id, key

    async def revoke_key(self, tenant_id: str, key_id: str, *, mode: str | None = None) -> bool:
        """`mode`: only a key of that mode (else LookupError), and never its last active one
        (ValueError). Decided on the version read, so two revokes at once cannot both pass."""
        state, version = await self.state(tenant_id)
        if mode is not None:
            key = state.keys.get(key_id)
            if key is None or key.mode != mode:
                raise LookupError(key_id)
            if [k.key_id for k in state.keys.values() if k.mode == mode and not k.revoked_at] == [key_id]:
                raise ValueError(f"This is the last active {mode} key: create another before revoking it.")
        revoked = {k.key_id for k in state.keys.values() if k.revoked_at}
        events = decide_revoke_key(set(state.keys), revoked, key_id)
        await self._append(tenant_id, version, events)
        return bool(events)

    async def rename(self, tenant_id: str, name: str) -> None:
        state, version = await self.state(tenant_id)
        await self._append(tenant_id, version, decide_rename(state.exists, state.name, name))

    async def _append(self, tenant_id: str, version: int, events: Decided) -> None:
        if not events:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await self.aggregates.append(conn, "tenant", tenant_id, version, events, tenant_id=tenant_id)
            if self.project is not None:
                for s in (await self.aggregates.load(conn, tenant_id)).stored[version:]:
                    await self.project(conn, s.event)
