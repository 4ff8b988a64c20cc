"""The command line every service shares:
`python -m services.<name> [serve | asyncapi | projections ... | dead-letters ...]`.

A service can add its own commands (invoicing adds `tenants`).
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import typer
from fastapi import FastAPI
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from shared import deadletters
from shared import projections as projecting
from shared.asyncapi import document
from shared.db import create_pool, migrate
from shared.deadletters import DeadLetter
from shared.logs import configure_logging
from shared.projections import Projection, rebuild
from shared.service import Service

T = TypeVar("T")


def make_cli(service: Service[Any], app_factory: Callable[[], FastAPI]) -> typer.Typer:
    cli = typer.Typer(help=f"Billstream {service.name} service", no_args_is_help=False, add_completion=False)
    projections = typer.Typer(help="Read models built from the event store")
    cli.add_typer(projections, name="projections")
    dead = typer.Typer(help="Events a consumer or projection parked after a deterministic failure")
    cli.add_typer(dead, name="dead-letters")

    @cli.callback(invoke_without_command=True)
    def main(ctx: typer.Context) -> None:
        if ctx.invoked_subcommand is None:
            serve()

    @cli.command()
    def serve() -> None:
        """Run the HTTP API, Kafka consumers, outbox relay and projections (the default)."""
        service.serve(app_factory())

    @cli.command()
    def asyncapi(
        output: Path | None = typer.Option(None, "--output", "-o", help="write here instead of stdout"),
    ) -> None:
        """Print the AsyncAPI document of the events this service publishes and consumes."""
        doc = document(
            service.name,
            service.registry,
            service.store.topics,
            sorted(set(service.consumed_topics)),
            kafka=service.settings.kafka_bootstrap,
        )
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
        asyncio.run(_with_pool(service, lambda pool: _rebuild(service, pool, chosen)))

    @dead.command("list")
    def list_dead_letters(
        everything: bool = typer.Option(False, "--all", help="also those already replayed or discarded"),
    ) -> None:
        """One line per dead letter: id, status, source, consumer or projection, stream, event, error."""
        letters = asyncio.run(
            _with_pool(service, lambda pool: deadletters.listing(pool, status=None if everything else "parked"))
        )
        for d in letters:
            typer.echo(
                "\t".join(
                    [
                        str(d.id),
                        d.status,
                        d.source,
                        d.consumer,
                        d.stream_id or "-",
                        d.event_id or "-",
                        d.created_at.isoformat(timespec="seconds"),
                        " ".join(d.error.split())[:120],
                    ]
                )
            )

    @dead.command("show")
    def show_dead_letter(id: int) -> None:
        """Everything about one dead letter, as JSON (the payload decoded when it is JSON)."""
        letter = _must_exist(asyncio.run(_with_pool(service, lambda pool: deadletters.get(pool, id))), id)
        typer.echo(json.dumps(_as_json(letter), indent=2, default=str))

    @dead.command("replay")
    def replay_dead_letter(id: str = typer.Argument(..., help="dead letter id, or 'all' (every parked one)")) -> None:
        """Run the handler or projection again for parked events (after a fix). Idempotent: an
        event its consumer has processed meanwhile is only marked replayed."""
        configure_logging(service.name, json=service.settings.log_json, level="WARNING")
        failed = asyncio.run(_with_pool(service, lambda pool: _replay(service, pool, id)))
        if failed:
            raise typer.Exit(1)

    @dead.command("discard")
    def discard_dead_letter(id: int) -> None:
        """Mark a parked event handled without running it (a redelivery of it is skipped)."""

        async def discard(pool: asyncpg.Pool) -> None:
            await deadletters.discard(pool, _must_exist(await deadletters.get(pool, id), id))

        asyncio.run(_with_pool(service, discard))
        typer.echo(f"dead letter {id} discarded")

    return cli


async def _with_pool(service: Service[Any], fn: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run `fn(pool)` against the service's database (migrated first)."""
    s = service.settings
    await migrate(s.database_url, *([service.migrations] if service.migrations else []))
    pool = await create_pool(s.database_url)
    service._pool = pool  # handlers replayed here reach the pool through the service
    try:
        return await fn(pool)
    finally:
        service._pool = None
        await pool.close()


def _must_exist(letter: DeadLetter | None, id: int) -> DeadLetter:
    if letter is None:
        raise typer.BadParameter(f"no dead letter {id}")
    return letter


def _as_json(letter: DeadLetter) -> dict[str, Any]:
    out = {**letter.__dict__, "payload": letter.payload.decode(errors="replace")}
    try:
        out["payload"] = json.loads(letter.payload)
    except ValueError:
        pass
    return out


async def _replay(service: Service[Any], pool: asyncpg.Pool, which: str) -> int:
    """Replay one dead letter (or every parked one); returns how many still fail."""
    if which == "all":
        letters = await deadletters.listing(pool)
    else:
        if not which.isdigit():
            raise typer.BadParameter(f"'{which}' is not a dead letter id (or 'all')")
        letters = [_must_exist(await deadletters.get(pool, int(which)), int(which))]
    failed = 0
    for letter in letters:
        try:
            typer.echo(f"dead letter {letter.id}: {await _replay_one(service, pool, letter)}")
        except Exception as exc:  # noqa: BLE001 - report it; the dead letter stays parked
            typer.echo(f"dead letter {letter.id} still fails: {exc!r}")
            failed += 1
    return failed


async def _replay_one(service: Service[Any], pool: asyncpg.Pool, letter: DeadLetter) -> str:
    if letter.status != "parked":
        return f"already {letter.status}, nothing done"
    if letter.source == deadletters.PROJECTION:
        projection = next((p for p in service.projections if p.name == letter.consumer), None)
        if projection is None:
            raise LookupError(f"this service has no projection '{letter.consumer}'")
        n = await projecting.replay(pool, service.store, projection, letter)
        return f"replayed into {projection.name} ({n} events of stream {letter.stream_id})"
    consumer = service.consumers.get(letter.consumer)
    if consumer is None:
        raise LookupError(f"this service has no consumer '{letter.consumer}'")
    handled = await consumer.replay(pool, letter)
    return "replayed" if handled else "replayed (its consumer had processed it already: no effect)"


async def _rebuild(service: Service[Any], pool: asyncpg.Pool, chosen: list[Projection]) -> None:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeRemainingColumn(),
    ) as progress:
        for projection in chosen:
            task = progress.add_task(f"rebuilding {projection.name}", total=None)

            def report(done: int, total: int, task: TaskID = task) -> None:
                progress.update(task, completed=done, total=max(total, done))

            n = await rebuild(pool, service.store, projection, on_progress=report)
            progress.update(task, completed=n, total=max(n, 1))
            progress.console.print(f"[green]{projection.name}[/]: replayed {n} events")
