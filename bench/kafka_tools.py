"""Kafka's own tools as baselines, run through deploy/local/kafka.sh and parsed:
ProducerPerformance (send → acknowledged latency at a given rate) and EndToEndLatency
(produce → consumed, one message at a time)."""

import asyncio
import re
import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.env import KAFKA, ROOT

KAFKA_SH = str(ROOT / "deploy" / "local" / "kafka.sh")
# "... 3 ms 50th, 10 ms 95th, 20 ms 99th, 30 ms 99.9th." on the summary line
_PERF = re.compile(
    r"records sent, ([\d.]+) records/sec .*?, ([\d.]+) ms avg latency, ([\d.]+) ms max latency, "
    r"(\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th"
)
_E2E = re.compile(r"Percentiles: 50th = ([\d.]+), 99th = ([\d.]+), 99.9th = ([\d.]+)")


async def _tool(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        KAFKA_SH, "tool", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return out.decode(errors="replace")


class ScratchTopic:
    """A one-partition topic for the tools, deleted afterwards."""

    def __init__(self) -> None:
        self.name = f"bench.{uuid.uuid4().hex[:10]}"

    async def __aenter__(self) -> str:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.name, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        return self.name

    async def __aexit__(self, *exc) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:
            await admin.delete_topics([self.name])
        finally:
            await admin.close()


def parse_producer_performance(output: str) -> dict[str, float]:
    m = _PERF.search(output)
    if not m:
        raise RuntimeError(f"unexpected ProducerPerformance output: {output[-500:]}")
    rate, _, _, p50, _, p99, p999 = (float(x) for x in m.groups())
    return {"rate": rate, "p50": p50, "p99": p99, "p99.9": p999}


def parse_end_to_end(output: str) -> dict[str, float]:
    m = _E2E.search(output)
    if not m:
        raise RuntimeError(f"unexpected EndToEndLatency output: {output[-500:]}")
    p50, p99, p999 = (float(x) for x in m.groups())
    return {"p50": p50, "p99": p99, "p99.9": p999}


async def producer_performance(topic: str, records: int, size: int, rate: float) -> dict[str, float]:
    """acks=all, like the outbox relay's producer; latency in ms."""
    out = await _tool(
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(size),
        "--throughput",
        str(rate),
        "--producer-props",
        f"bootstrap.servers={KAFKA}",
        "acks=all",
        "linger.ms=2",
    )
    return parse_producer_performance(out)


async def end_to_end_latency(topic: str, messages: int, size: int) -> dict[str, float]:
    out = await _tool("org.apache.kafka.tools.EndToEndLatency", KAFKA, topic, str(messages), "all", str(size))
    return parse_end_to_end(out)
