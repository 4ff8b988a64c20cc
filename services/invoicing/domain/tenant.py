"""Tenants and their API keys: pure decisions; the caller generates and hashes the key."""

from dataclasses import dataclass

from pydantic import BaseModel

from .events import ApiKeyCreated, ApiKeyRevoked, TenantCreated, TenantUpdated


@dataclass(frozen=True)
class NewKey:
    key_id: str
    key_hash: str
    prefix: str  # the first characters, shown in listings so people can tell keys apart
    mode: str


def _key_created(key: NewKey) -> tuple[str, BaseModel]:
    return "api_key.created", ApiKeyCreated(key_id=key.key_id, key_hash=key.key_hash, prefix=key.prefix, mode=key.mode)


def decide_create_tenant(name: str, key: NewKey) -> list[tuple[str, BaseModel]]:
    if not name.strip():
        raise ValueError("a tenant needs a name")
    return [("tenant.created", TenantCreated(name=name.strip())), _key_created(key)]


def decide_create_key(tenant_exists: bool, key: NewKey) -> list[tuple[str, BaseModel]]:
    """Another key for a tenant, e.g. a live key beside its first test key."""
    if not tenant_exists:
        raise ValueError("no such tenant")
    return [_key_created(key)]


def decide_revoke_key(known_keys: set[str], revoked: set[str], key_id: str) -> list[tuple[str, BaseModel]]:
    if key_id not in known_keys:
        raise ValueError(f"no such key: {key_id}")
    if key_id in revoked:
        return []  # revoking twice changes nothing
    return [("api_key.revoked", ApiKeyRevoked(key_id=key_id))]


def decide_rename(tenant_exists: bool, current: str, name: str) -> list[tuple[str, BaseModel]]:
    if not tenant_exists:
        raise ValueError("no such tenant")
    if not name.strip():
        raise ValueError("a tenant needs a name")
    return [] if name.strip() == current else [("tenant.updated", TenantUpdated(name=name.strip()))]
