"""billing.dunning: dunning.retry_due asks for another automatic charge of the saved method."""

import asyncpg

from shared.envelope import CloudEvent

from ..app.collect import collect_automatically


async def on_dunning_event(conn: asyncpg.Connection, event: CloudEvent) -> None:
    if event.type != "dunning.retry_due":
        return
    d = event.data
    await collect_automatically(conn, event.tenantid, d["invoiceId"], attempt=int(d.get("attempt") or 1))
