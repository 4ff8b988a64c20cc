"""python -m tests.support.relay_proc DSN BOOTSTRAP: run an outbox relay until killed."""

import asyncio
import sys

from shared.db import create_pool
from shared.logs import configure_logging
from shared.outbox import OutboxRelay


async def main(dsn: str, bootstrap: str) -> None:
    configure_logging("relay-test", json=True)
    pool = await create_pool(dsn)
    await OutboxRelay(dsn, pool, bootstrap, poll_interval=0.2).run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3]))
