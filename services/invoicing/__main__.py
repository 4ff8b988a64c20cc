"""python -m services.invoicing [serve | projections ... | tenants ...]"""

import asyncio

import typer

from shared.cli import make_cli
from shared.db import create_pool, migrate

from .app.handlers import TenantHandlers
from .service import create_app, service

cli = make_cli(service, create_app)
tenants = typer.Typer(help="Tenants and their API keys")
cli.add_typer(tenants, name="tenants")


async def _with_handlers(fn):
    s = service.settings
    await migrate(s.database_url, service.migrations)
    pool = await create_pool(s.database_url)
    try:
        return await fn(TenantHandlers(pool, service.store))
    finally:
        await pool.close()


@tenants.command("create")
def create_tenant(
    name: str = typer.Option(..., "--name", help="the business's name"),
    mode: str = typer.Option("test", "--mode", help="test or live: the key's prefix sk_test_/sk_live_"),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of text"),
) -> None:
    """Create a tenant and print its first API key (shown once; stored only as a hash)."""
    if mode not in ("test", "live"):
        raise typer.BadParameter("mode must be test or live")
    tenant_id, key_id, key = asyncio.run(_with_handlers(lambda h: h.create(name, mode)))
    if json_out:
        import json

        typer.echo(json.dumps({"tenantId": tenant_id, "keyId": key_id, "apiKey": key}))
    else:
        typer.echo(f"tenant  {tenant_id}\nkey id  {key_id}\napi key {key}\n(store the key now: it is not shown again)")


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
