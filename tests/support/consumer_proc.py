"""python -m tests.support.consumer_proc DSN BOOTSTRAP TOPIC [NAME]: a service process (the real
Service wiring: FastStream subscriber, inbox) whose handler records one row per effect."""

import asyncio
import sys

from shared.logs import configure_logging
from shared.service import Service
from shared.settings import ServiceSettings


async def main(dsn: str, bootstrap: str, topic: str, name: str = "crashtest") -> None:
    configure_logging("consumer-test", json=True)
    service = Service(
        ServiceSettings(service_name=name, database_url=dsn, kafka_bootstrap=bootstrap),
        topics={},
    )

    @service.consume(topic, "effects")
    async def record_effect(conn, event) -> None:
        await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", event.id)

    await service.start()
    try:
        await asyncio.Event().wait()
    finally:
        await service.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
