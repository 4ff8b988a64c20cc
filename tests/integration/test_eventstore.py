"""The event store's contract (tests/support/eventstore_contract.py) against a real PostgreSQL."""

import pytest

from shared.eventstore import EventStore
from tests.support.eventstore_contract import EventStoreContract


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self):
        return EventStore({"thing": "test.things"})

    @pytest.fixture
    def outbox(self):
        async def rows(pool):
            return [tuple(r) for r in await pool.fetch("SELECT event_id, topic, key FROM outbox ORDER BY position")]

        return rows
