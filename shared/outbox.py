"""The outbox relay: publishes committed outbox rows to Kafka in position (= commit) order.

At least once: a row is marked published only after Kafka acknowledged it, so a crash between
the two publishes it again and the consumers' inboxes drop the duplicate. Only one relay per
database publishes at a time (a session advisory lock elects it), which keeps each key in order.
While Kafka is down the relay backs off and retries the same rows; it catches up afterwards.
"""

import asyncio
from collections.abc import Callable

import asyncpg
from aiokafka import AIOKafkaProducer

from shared.envelope import CONTENT_TYPE
from shared.eventstore import NOTIFY_CHANNEL
from shared.failpoints import failpoint
from shared.logs import get_logger
from shared.wakeup import Wakeup

log = get_logger(__name__)
RELAY_LOCK = 0x6F75_7462  # "outb"
HEADERS = [("content-type", CONTENT_TYPE.encode())]


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        request_timeout_ms=10_000,
    )


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        bootstrap: str,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 2.0,  # a retry every 2 s costs nothing and catches up soon after Kafka
        retention: str = "1 day",
        producer_factory: Callable[[str], AIOKafkaProducer] = make_producer,
    ) -> None:
        self.dsn, self.pool, self.bootstrap = dsn, pool, bootstrap
        self.batch_size, self.poll_interval, self.max_backoff = batch_size, poll_interval, max_backoff
        self.retention = retention
        self.producer_factory = producer_factory
        self.published = 0
        self._wakeup = Wakeup(poll_interval)

    async def run(self) -> None:
        """Run until cancelled: wait to be leader, then publish forever."""
        # A dedicated connection holds the leader lock and listens for new events.
        leader = await asyncpg.connect(self.dsn)
        try:
            while not await leader.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK):
                await asyncio.sleep(self.poll_interval)
            await self._wakeup.listen(leader, NOTIFY_CHANNEL)
            log.info("outbox relay leading")
            await self._publish_forever(leader)
        finally:
            await leader.close()

    async def _publish_forever(self, leader: asyncpg.Connection) -> None:
        backoff, producer = 0.5, None
        try:
            while True:
                if leader.is_closed():  # the lock went with the connection: elect again
                    raise ConnectionError("outbox relay lost its leader lock")
                try:
                    if producer is None:
                        producer = self.producer_factory(self.bootstrap)
                        await producer.start()
                    sent = await self.publish_batch(producer)
                    backoff = 0.5
                    if sent < self.batch_size:
                        await self._idle()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # noqa: BLE001 - Kafka or PostgreSQL away: keep the rows, retry later
                    log.warning("outbox relay backing off", error=repr(exc), retry_in_s=backoff)
                    if producer is not None:
                        await _stop_quietly(producer)
                        producer = None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
        finally:
            if producer is not None:
                await _stop_quietly(producer)

    async def _idle(self) -> None:
        if not await self._wakeup.wait():
            await self._purge()

    async def publish_batch(self, producer: AIOKafkaProducer) -> int:
        """Publish the next batch of unpublished rows; returns how many were published."""
        rows = await self.pool.fetch(
            """SELECT position, topic, key, payload FROM outbox
               WHERE published_at IS NULL ORDER BY position LIMIT $1""",
            self.batch_size,
        )
        if not rows:
            return 0
        # Queue the whole batch, then wait for every acknowledgement.
        futures = [await producer.send(r["topic"], r["payload"], key=r["key"].encode(), headers=HEADERS) for r in rows]
        await asyncio.gather(*futures)
        failpoint("relay.after_publish")
        await self.pool.execute(
            "UPDATE outbox SET published_at = now() WHERE position = ANY($1::bigint[])",
            [r["position"] for r in rows],
        )
        self.published += len(rows)
        log.debug("outbox published", count=len(rows), last_position=rows[-1]["position"])
        return len(rows)

    async def _purge(self) -> None:
        await self.pool.execute(f"DELETE FROM outbox WHERE published_at < now() - interval '{self.retention}'")


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    try:
        await producer.stop()
    except Exception:  # noqa: BLE001 - already failing; the next start reconnects
        pass
