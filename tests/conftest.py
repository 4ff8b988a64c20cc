"""Test servers: the real PostgreSQL and Kafka.

By default the suite uses the servers the local stack runs (`make infra` / `make up`), found
through BILLSTREAM_TEST_PG_DSN and BILLSTREAM_TEST_KAFKA. With BILLSTREAM_TESTCONTAINERS=1 and a
Docker engine it starts its own in containers instead. A missing server fails the run: it is
never a skip.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hypothesis import settings as hypothesis_settings

from shared.db import create_pool, migrate

# Services the tests start run with development secrets: local mode (shared/settings.py).
os.environ.setdefault("BILLSTREAM_ENV", "local")
PG_DSN = os.environ.get("BILLSTREAM_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:55432/postgres")
KAFKA = os.environ.get("BILLSTREAM_TEST_KAFKA", "127.0.0.1:59092")

# Hypothesis: no deadline anywhere (two shared cores make timings meaningless); in CI also
# derandomized, so a red run is the same run again. HYPOTHESIS_PROFILE picks one explicitly.
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, max_examples=200, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session")
def servers() -> dict[str, str]:
    if os.environ.get("BILLSTREAM_TESTCONTAINERS") == "1":
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        pg = PostgresContainer("postgres:15", driver=None).start()
        kafka = KafkaContainer("apache/kafka:4.1.1").with_kraft().start()
        yield {"pg": pg.get_connection_url(), "kafka": kafka.get_bootstrap_server()}
        kafka.stop()
        pg.stop()
        return
    yield {"pg": PG_DSN, "kafka": KAFKA}


@pytest.fixture(scope="session")
async def pg_admin(servers) -> str:
    try:
        conn = await asyncpg.connect(servers["pg"], timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL not reachable at {servers['pg']} ({exc}); run `make infra` first")
    await conn.close()
    return servers["pg"]


@pytest.fixture(scope="session")
def kafka(servers) -> str:
    return servers["kafka"]


def _dsn_for(admin_dsn: str, database: str) -> str:
    base, _, _ = admin_dsn.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
async def database(pg_admin) -> AsyncIterator[str]:
    """A fresh database with the core schema applied; dropped afterwards."""
    name = f"bs_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_admin)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = _dsn_for(pg_admin, name)
    try:
        await migrate(dsn)
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def pool(database) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database, max_size=20)
    yield pool
    await pool.close()


@pytest.fixture
async def topic(kafka) -> str:
    """A new topic with three partitions."""
    name = f"test.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def eventually(check, *, timeout: float = 20.0, interval: float = 0.1):
    """Poll an async check until it returns something truthy; fail with its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


async def caught_up(pool, store, projection, *, timeout: float = 20.0) -> int:
    """Catch a projection up on everything committed so far; returns the events read. One
    catch_up may stop short: the store reads only below the server's oldest open transaction,
    and on a shared server that can be anyone's, in any database."""
    from shared.projections import catch_up

    deadline, total = asyncio.get_running_loop().time() + timeout, 0
    while True:
        read = await catch_up(pool, store, projection)
        total += read
        if not read:
            async with pool.acquire() as conn:
                if not await store.has_unreadable(conn):
                    return total
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{projection.name} not caught up within {timeout}s")
        await asyncio.sleep(0.05)


def days_from_today(days: int) -> str:
    """An ISO date `days` after today (UTC): tests never name a calendar date that time can overtake."""
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()
