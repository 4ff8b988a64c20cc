"""payment_list: one row per payment, the read model behind GET /api/payments."""

from datetime import datetime

import asyncpg

from shared.eventstore import StoredEvent
from shared.projections import Projection

from ..domain.events import EVENT_MODELS


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class PaymentList(Projection):
    name = "payment_list"
    event_types = frozenset(EVENT_MODELS)

    async def apply(self, conn: asyncpg.Connection, stored: StoredEvent) -> None:
        p = stored.event.data["payment"]  # every payment event carries the snapshot after it
        await conn.execute(
            """INSERT INTO payment_list (payment_id, tenant_id, invoice_id, customer_id, status, provider, amount,
                                         currency, version, created_at, updated_at, view)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (payment_id) DO UPDATE SET status = EXCLUDED.status, version = EXCLUDED.version,
                 updated_at = EXCLUDED.updated_at, view = EXCLUDED.view
               WHERE payment_list.version < EXCLUDED.version""",
            p["id"],
            stored.event.tenantid,
            p["invoiceId"],
            p.get("customerId"),
            p["status"],
            p["provider"],
            p["amount"],
            p["currency"],
            stored.version,
            _time(p["createdAt"]),
            _time(p["updatedAt"]),
            p,
        )

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("TRUNCATE payment_list")
