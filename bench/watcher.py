"""Polls, in its own process so the writer's load does not delay it, how far the invoice_list
projection and readers of the event store have got, and writes each change as
`unix_time checkpoint_transaction checkpoint_position readable_transaction readable_position` to a
file (the last event a reader could take: see shared/eventstore.py). Started and stopped by
bench.projection_latency."""

import asyncio
import sys
import time

import asyncpg

POLL_S = 0.002
QUERY = """SELECT c.transaction_id, c.position, r.transaction_id, r.position
           FROM (SELECT 1) AS one
           LEFT JOIN projection_checkpoints AS c ON c.name = 'invoice_list'
           LEFT JOIN LATERAL (SELECT transaction_id, position FROM events
                              WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
                              ORDER BY transaction_id DESC, position DESC LIMIT 1) AS r ON true"""


async def main(dsn: str, path: str) -> None:
    conn = await asyncpg.connect(dsn)
    last = None
    with open(path, "w", buffering=1) as out:
        print("ready", flush=True)
        while True:
            row = tuple(await conn.fetchrow(QUERY))
            if row != last:
                out.write(f"{time.time():.6f} " + " ".join(str(v or 0) for v in row) + "\n")
                last = row
            await asyncio.sleep(POLL_S)


if __name__ == "__main__":
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(main(sys.argv[1], sys.argv[2]))
