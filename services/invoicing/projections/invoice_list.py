"""invoice_list: one row per invoice with the columns the list endpoint filters and sorts on."""

import asyncpg

from shared.eventstore import EventStore, StoredEvent
from shared.projections import Projection

from ..api.views import invoice_view
from ..domain.events import registry
from ..domain.invoice import fold


class InvoiceList(Projection):
    name = "invoice_list"
    event_types = frozenset({"invoice.created"})

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def apply(self, conn: asyncpg.Connection, stored: StoredEvent) -> None:
        # The row shows the invoice as of this event: fold the stream up to its version.
        history = [s for s in await self.store.read_stream(conn, stored.stream_id) if s.version <= stored.version]
        state = fold([(s.event.type, registry.load(s.event)) for s in history])
        created_at, updated_at = history[0].event.time, stored.event.time
        view = invoice_view(state, created_at=created_at, updated_at=updated_at)
        await conn.execute(
            """INSERT INTO invoice_list (invoice_id, tenant_id, customer_id, status, currency, total,
                                         amount_due, due_date, created_at, updated_at, view)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               ON CONFLICT (invoice_id) DO UPDATE SET
                 status = EXCLUDED.status, total = EXCLUDED.total, amount_due = EXCLUDED.amount_due,
                 due_date = EXCLUDED.due_date, updated_at = EXCLUDED.updated_at, view = EXCLUDED.view""",
            state.id, stored.event.tenantid, state.customer_id, state.status, state.currency,
            state.total, state.amount_due, state.due_date, created_at, updated_at, view,
        )

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("TRUNCATE invoice_list")
