"""A small service for the dead-letter tests: a consumer `deadtest.effects` that records one row
per event (and refuses events whose data says `"refuse": true`), and a projection `ledger` whose
bigint column a huge amount does not fit.

python -m tests.support.dead_letters DSN dead-letters ...: that service's CLI (shared/cli.py).
"""

import sys

import asyncpg
from fastapi import FastAPI

from shared.cli import make_cli
from shared.eventstore import EventStore, StoredEvent
from shared.projections import Projection
from shared.service import Service
from shared.settings import ServiceSettings

STREAM_TYPE = "account"
LEDGER_TABLE = "CREATE TABLE ledger (stream_id text PRIMARY KEY, tenant_id text NOT NULL, amount bigint NOT NULL)"


class Ledger(Projection):
    name = "ledger"
    event_types = frozenset({"account.changed"})

    async def apply(self, conn: asyncpg.Connection, stored: StoredEvent) -> None:
        await conn.execute(
            """INSERT INTO ledger (stream_id, tenant_id, amount) VALUES ($1, $2, $3)
               ON CONFLICT (stream_id) DO UPDATE SET amount = EXCLUDED.amount""",
            stored.stream_id,
            stored.event.tenantid,
            stored.event.data["amount"],
        )

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("TRUNCATE ledger")


async def record_effect(conn: asyncpg.Connection, event) -> None:
    if event.data.get("refuse"):
        raise ValueError(f"refused: {event.id}")
    await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", event.id)


def make_service(dsn: str, bootstrap: str = "127.0.0.1:9") -> Service:
    service = Service(
        ServiceSettings(service_name="deadtest", database_url=dsn, kafka_bootstrap=bootstrap),
        topics={STREAM_TYPE: "test.accounts"},
        projections=[Ledger()],
    )
    service.consume("test.effects", "effects")(record_effect)
    return service


def store() -> EventStore:
    return EventStore({STREAM_TYPE: "test.accounts"})


if __name__ == "__main__":
    dsn, args = sys.argv[1], sys.argv[2:]
    make_cli(make_service(dsn), FastAPI)(args)
