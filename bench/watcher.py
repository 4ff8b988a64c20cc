"""Polls, in its own process so the writer's load does not delay it, how far the event store and
the invoice_list projection have got, and writes each change as `unix_time checkpoint max_position`
to a file. Started and stopped by bench.projection_latency."""

import asyncio
import sys
import time

import asyncpg

POLL_S = 0.002
QUERY = """SELECT (SELECT position FROM projection_checkpoints WHERE name = 'invoice_list'),
                  (SELECT max(position) FROM events)"""


async def main(dsn: str, path: str) -> None:
    conn = await asyncpg.connect(dsn)
    last = None
    with open(path, "w", buffering=1) as out:
        print("ready", flush=True)
        while True:
            row = tuple(await conn.fetchrow(QUERY))
            if row != last:
                out.write(f"{time.time():.6f} {row[0] or 0} {row[1] or 0}\n")
                last = row
            await asyncio.sleep(POLL_S)


if __name__ == "__main__":
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(main(sys.argv[1], sys.argv[2]))
