"""python -m services.invoicing [serve | projections ... | tenants ...]"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer

from shared.cli import make_cli
from shared.db import create_pool, migrate

from .app.tenants import TenantHandlers
from .service import create_app, service

cli = make_cli(service, create_app)
tenants = typer.Typer(
    help="Tenants and their API keys. A tenant's test keys (sk_test_) and live keys (sk_live_) "
    "see separate data: what one creates, the other does not find."
)
cli.add_typer(tenants, name="tenants")
T = TypeVar("T")
MODE_HELP = "test or live: the key's prefix sk_test_/sk_live_ (test and live keys see separate data)"


def _check_mode(mode: str) -> None:
    if mode not in ("test", "live"):
        raise typer.BadParameter("mode must be test or live")


def _print_key(tenant_id: str, key_id: str, key: str, json_out: bool) -> None:
    """The bare tenant id (the one revoke-key and create-key take), whatever the key's mode."""
    if json_out:
        import json

        typer.echo(json.dumps({"tenantId": tenant_id, "keyId": key_id, "apiKey": key}))
    else:
        typer.echo(f"tenant  {tenant_id}\nkey id  {key_id}\napi key {key}\n(store the key now: it is not shown again)")


async def _with_handlers(fn: Callable[[TenantHandlers], Awaitable[T]]) -> T:
    s = service.settings
    await migrate(s.database_url, *([service.migrations] if service.migrations else []))
    pool = await create_pool(s.database_url)
    try:
        return await fn(TenantHandlers(pool, service.aggregates))
    finally:
        await pool.close()


@tenants.command("create")
def create_tenant(
    name: str = typer.Option(..., "--name", help="the business's name"),
    mode: str = typer.Option("test", "--mode", help=MODE_HELP),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of text"),
) -> None:
    """Create a tenant and print its first API key (shown once; stored only as a hash)."""
    _check_mode(mode)
    _print_key(*asyncio.run(_with_handlers(lambda h: h.create(name, mode))), json_out)


@tenants.command("create-key")
def create_key(
    tenant_id: str,
    mode: str = typer.Option("test", "--mode", help=MODE_HELP),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of text"),
) -> None:
    """Give a tenant another API key, e.g. a live key beside its test key (shown once)."""
    _check_mode(mode)
    try:
        key_id, key = asyncio.run(_with_handlers(lambda h: h.create_key(tenant_id, mode)))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    _print_key(tenant_id, key_id, key, json_out)


@tenants.command("revoke-key")
def revoke_key(tenant_id: str, key_id: str) -> None:
    """Revoke an API key; every service refuses it once the event reaches it."""
    try:
        changed = asyncio.run(_with_handlers(lambda h: h.revoke_key(tenant_id, key_id)))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo("revoked" if changed else "already revoked")


if __name__ == "__main__":
    cli()
