"""PostgreSQL access: the asyncpg pool and schema migrations (yoyo, from versioned SQL files)."""

import asyncio
import json
from pathlib import Path

import asyncpg
from yoyo import get_backend, read_migrations

CORE_MIGRATIONS = Path(__file__).parent / "migrations"


async def _init_connection(conn: asyncpg.Connection) -> None:
    for pg_type in ("json", "jsonb"):
        await conn.set_type_codec(pg_type, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_end_transaction
    )


async def _end_transaction(conn: asyncpg.Connection) -> None:
    """Release only ends a transaction left open. Pooled connections never carry session state
    (listeners, session locks and settings live on dedicated connections), and asyncpg's default
    reset (RESET ALL, UNLISTEN *, ...) would cost a round trip on every release."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _apply(dsn: str, dirs: list[Path]) -> list[str]:
    backend = get_backend(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    migrations = read_migrations(*(str(d) for d in dirs))
    with backend.lock():
        todo = backend.to_apply(migrations)
        backend.apply_migrations(todo)
    return [m.id for m in todo]


async def migrate(dsn: str, *service_dirs: Path) -> list[str]:
    """Apply the core migrations and the service's own, in id order; returns the ids applied.

    yoyo takes a lock, so two processes starting together apply each migration once.
    """
    return await asyncio.to_thread(_apply, dsn, [CORE_MIGRATIONS, *service_dirs])
