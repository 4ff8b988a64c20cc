"""A projection runner in its own process, as in the invoicing service: the Invoicing read
models over a scratch database. Started and stopped by bench.projection_latency."""

import asyncio
import sys

from services.invoicing.domain.events import STREAM_TOPICS
from services.invoicing.projections.invoice_list import CreditNotes, CustomerList, InvoiceList
from shared.db import create_pool
from shared.eventstore import EventStore
from shared.projections import ProjectionRunner


async def main(dsn: str) -> None:
    pool = await create_pool(dsn, max_size=4)
    runner = ProjectionRunner(dsn, pool, EventStore(STREAM_TOPICS), [InvoiceList(), CustomerList(), CreditNotes()])
    print("ready", flush=True)
    await runner.run()


if __name__ == "__main__":
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(main(sys.argv[1]))
