"""Invoicing's application layer: load a stream, decide, append (one transaction), and the
queries the API serves."""

from datetime import datetime

import asyncpg

from shared.auth import generate_key, hash_key
from shared.errors import NotFound
from shared.eventstore import EventStore, StoredEvent
from shared.ids import new_id

from ..api.views import invoice_view
from ..domain.events import registry
from ..domain.invoice import CreateDraft, Invoice, decide_create, fold
from ..domain.tenant import NewKey, decide_create_tenant, decide_revoke_key

SOURCE = "/billstream/invoicing"


class InvoiceHandlers:
    def __init__(self, pool: asyncpg.Pool, store: EventStore) -> None:
        self.pool, self.store = pool, store

    async def _stream(self, conn: asyncpg.Connection, tenant_id: str, invoice_id: str,
                      as_of: datetime | None = None) -> list[StoredEvent]:
        stored = await self.store.read_stream(conn, invoice_id, as_of=as_of)
        if not stored or stored[0].event.tenantid != tenant_id or stored[0].stream_type != "invoice":
            raise NotFound("invoice", invoice_id)  # another tenant's invoice does not exist here
        return stored

    @staticmethod
    def _view(stored: list[StoredEvent]) -> dict:
        state = fold([(s.event.type, registry.load(s.event)) for s in stored])
        return invoice_view(state, created_at=stored[0].event.time, updated_at=stored[-1].event.time)

    async def create_draft(self, tenant_id: str, cmd: CreateDraft) -> dict:
        events = [
            registry.new_event("invoice.created", e, source=SOURCE, subject=cmd.invoice_id, tenant_id=tenant_id)
            for e in decide_create(Invoice(), cmd)
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            await self.store.append(conn, "invoice", cmd.invoice_id, 0, events)
            return self._view(await self._stream(conn, tenant_id, cmd.invoice_id))

    async def get(self, tenant_id: str, invoice_id: str, as_of: datetime | None = None) -> dict:
        """The invoice now, or exactly as it was at `as_of`, folded from its events."""
        async with self.pool.acquire() as conn:
            return self._view(await self._stream(conn, tenant_id, invoice_id, as_of))

    async def history(self, tenant_id: str, invoice_id: str) -> list[dict]:
        async with self.pool.acquire() as conn:
            stored = await self._stream(conn, tenant_id, invoice_id)
        return [s.event.model_dump(mode="json", exclude_none=True) for s in stored]


class TenantHandlers:
    """Used by the `tenants` CLI; tenant events reach every service through billing.tenants."""

    def __init__(self, pool: asyncpg.Pool, store: EventStore) -> None:
        self.pool, self.store = pool, store

    async def create(self, name: str, mode: str = "test") -> tuple[str, str, str]:
        """Returns (tenant id, key id, the key itself: shown once, stored only hashed)."""
        key = generate_key(mode)
        tenant_id, key_id = new_id("ten"), new_id("key")
        events = decide_create_tenant(name, NewKey(key_id, hash_key(key), key[:12], mode))
        await self._append(tenant_id, 0, events)
        return tenant_id, key_id, key

    async def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        async with self.pool.acquire() as conn:
            stored = await self.store.read_stream(conn, tenant_id)
        known = {s.event.data["keyId"] for s in stored if s.event.type == "api_key.created"}
        revoked = {s.event.data["keyId"] for s in stored if s.event.type == "api_key.revoked"}
        events = decide_revoke_key(known, revoked, key_id)
        await self._append(tenant_id, len(stored), events)
        return bool(events)

    async def _append(self, tenant_id: str, version: int, events: list[tuple[str, object]]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self.store.append(
                conn, "tenant", tenant_id, version,
                [registry.new_event(t, d, source=SOURCE, subject=tenant_id, tenant_id=tenant_id)
                 for t, d in events],
            )
