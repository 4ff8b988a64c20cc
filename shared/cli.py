"""The command line every service shares: `python -m services.<name> [serve|projections ...]`.

A service can add its own commands (invoicing adds `tenants`).
"""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import typer
from fastapi import FastAPI
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from shared.asyncapi import document
from shared.db import create_pool, migrate
from shared.logs import configure_logging
from shared.projections import rebuild
from shared.service import Service


def make_cli(service: Service, app_factory: Callable[[], FastAPI]) -> typer.Typer:
    cli = typer.Typer(help=f"Billstream {service.name} service", no_args_is_help=False, add_completion=False)
    projections = typer.Typer(help="Read models built from the event store")
    cli.add_typer(projections, name="projections")

    @cli.callback(invoke_without_command=True)
    def main(ctx: typer.Context) -> None:
        if ctx.invoked_subcommand is None:
            serve()

    @cli.command()
    def serve() -> None:
        """Run the HTTP API, Kafka consumers, outbox relay and projections (the default)."""
        service.serve(app_factory())

    @cli.command()
    def asyncapi(output: Path | None = typer.Option(None, "--output", "-o", help="write here instead of stdout")) -> None:
        """Print the AsyncAPI document of the events this service publishes and consumes."""
        doc = document(service.name, service.registry, service.store.topics, sorted(set(service.consumed_topics)),
                       kafka=service.settings.kafka_bootstrap)
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        if output:
            output.write_text(text)
        else:
            typer.echo(text, nl=False)

    @projections.command("list")
    def list_projections() -> None:
        """Name every projection of this service."""
        for p in service.projections:
            typer.echo(p.name)

    @projections.command("rebuild")
    def rebuild_projection(name: str = typer.Argument(..., help="projection name, or 'all'")) -> None:
        """Drop a projection and rebuild it from the event store, with progress."""
        chosen = [p for p in service.projections if name in (p.name, "all")]
        if not chosen:
            known = ", ".join(p.name for p in service.projections) or "none"
            raise typer.BadParameter(f"unknown projection '{name}' (known: {known})")
        configure_logging(service.name, json=service.settings.log_json, level="WARNING")
        asyncio.run(_rebuild(service, chosen))

    return cli


async def _rebuild(service: Service, chosen: list) -> None:
    s = service.settings
    await migrate(s.database_url, *([service.migrations] if service.migrations else []))
    pool = await create_pool(s.database_url)
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("events"), TimeRemainingColumn(),
        ) as progress:
            for projection in chosen:
                task = progress.add_task(f"rebuilding {projection.name}", total=None)

                def report(done: int, total: int, task=task) -> None:
                    progress.update(task, completed=done, total=max(total, done))

                n = await rebuild(pool, service.store, projection, on_progress=report)
                progress.update(task, completed=n, total=max(n, 1))
                progress.console.print(f"[green]{projection.name}[/]: replayed {n} events")
    finally:
        await pool.close()
