"""The event store's contract (tests/support/eventstore_contract.py) against the in-memory store
that app-layer unit tests run on: the same tests the PostgreSQL store passes."""

import pytest

from shared.memory_store import MemoryEventStore
from tests.support.eventstore_contract import EventStoreContract


class TestMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self):
        return MemoryEventStore({"thing": "test.things"})

    @pytest.fixture
    def pool(self, store):
        return store.pool()

    @pytest.fixture
    def outbox(self):
        async def rows(pool):
            return [(r.event_id, r.topic, r.key) for r in pool.store.outbox]

        return rows
