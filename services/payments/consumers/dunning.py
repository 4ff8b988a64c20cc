"""billing.dunning: dunning.retry_due asks for another automatic charge of the saved method.
`make_dunning_consumer` closes over the service's Payments (no import of the wiring)."""

import asyncpg

from shared.envelope import CloudEvent

from ..app.collect import collect_automatically
from ..app.handlers import Payments


def make_dunning_consumer(payments: Payments):
    async def on_dunning_event(conn: asyncpg.Connection, event: CloudEvent) -> None:
        if event.type != "dunning.retry_due":
            return
        d = event.data
        await collect_automatically(payments, conn, event.tenantid, d["invoiceId"], attempt=int(d.get("attempt") or 1))

    return on_dunning_event
