"""Reading and writing test topics on the real broker."""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from shared.envelope import CloudEvent


async def read_topic(bootstrap: str, topic: str, *, at_least: int, timeout: float = 20.0) -> list:
    """Every record on the topic, from the beginning, once at least `at_least` have arrived."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        records, deadline = [], asyncio.get_running_loop().time() + timeout
        while len(records) < at_least and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                records.extend(recs)
        # Drain anything else already there, so duplicates are counted too.
        batch = await consumer.getmany(timeout_ms=500)
        for recs in batch.values():
            records.extend(recs)
        return records
    finally:
        await consumer.stop()


async def produce(bootstrap: str, topic: str, events: list[CloudEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(topic, e.to_json(), key=e.subject.encode())
    finally:
        await producer.stop()


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0 and tp.topic == topic}
    finally:
        await admin.close()
