"""python -m services.payments [serve | projections ... | dead-letters replay]"""

import asyncio

import typer

from shared.cli import make_cli
from shared.db import create_pool, migrate
from shared.inbox import Delivery

from .service import create_app, service

cli = make_cli(service, create_app)
dead_letters = typer.Typer(help="Events a consumer could not handle")
cli.add_typer(dead_letters, name="dead-letters")


async def _replay() -> tuple[int, int, int]:
    s = service.settings
    await migrate(s.database_url, service.migrations)
    pool = await create_pool(s.database_url)
    service._pool = pool  # handlers reach the pool through the service
    done = failed = skipped = 0
    try:
        rows = await pool.fetch("SELECT * FROM dead_letters WHERE consumer = ANY($1::text[]) ORDER BY id",
                                list(service.consumers))
        for row in rows:
            consumer = service.consumers[row["consumer"]]
            try:
                handled = await consumer.process(pool, bytes(row["payload"]),
                                                 Delivery(row["topic"], row["partition"], row["offset"]))
            except Exception as exc:  # noqa: BLE001 - report and keep the dead letter
                typer.echo(f"dead letter {row['id']} still fails: {exc!r}")
                failed += 1
                continue
            # Not handled: already processed, or dead-lettered again as a new row (malformed).
            await pool.execute("DELETE FROM dead_letters WHERE id = $1", row["id"])
            done, skipped = done + handled, skipped + (not handled)
    finally:
        await pool.close()
    return done, skipped, failed


@dead_letters.command("replay")
def replay() -> None:
    """Hand every dead-lettered event to its consumer again (the inbox skips ones already done)."""
    done, skipped, failed = asyncio.run(_replay())
    typer.echo(f"handled {done}, skipped or dead-lettered again {skipped}, still failing {failed}")


if __name__ == "__main__":
    cli()
