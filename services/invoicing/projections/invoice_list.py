"""invoice_list, customer_list, credit_notes, plan_list and subscription_list: read models from the snapshots each event
carries, so applying an event is one upsert (and a rebuild never re-folds streams).

Each row is written in the command's transaction and again by the runner (shared/projections.py),
so every write is guarded: a row only moves to a later stream version. A deletion leaves the row
as a tombstone (`deleted`, at the deletion's version, hidden from every list) rather than removing
it, so an older snapshot applied late (the runner, meeting the row while the deleting transaction
commits) finds a newer row and changes nothing."""

from datetime import datetime

import asyncpg

from shared.eventstore import StoredEvent
from shared.projections import Projection


def _search(*parts: str | None) -> str:
    return " ".join(p.lower() for p in parts if p)


class InvoiceList(Projection):
    name = "invoice_list"
    event_types = frozenset(
        {
            "invoice.created",
            "invoice.updated",
            "invoice.imported",
            "invoice.finalized",
            "invoice.sent",
            "invoice.payment_received",
            "invoice.paid",
            "invoice.overdue",
            "invoice.payment_failed",
            "invoice.marked_uncollectible",
            "invoice.voided",
            "invoice.written_off",
            "invoice.refunded",
            "invoice.adjusted",
            "invoice.adjustment_voided",
            "invoice.deleted",
        }
    )
    latest_per_stream = True

    async def apply(self, conn: asyncpg.Connection, stored: StoredEvent) -> None:
        await self.apply_batch(conn, [stored])

    async def apply_batch(self, conn: asyncpg.Connection, batch: list[StoredEvent]) -> None:
        """Catch-up hands over only each invoice's latest event of a batch (`latest_per_stream`:
        every invoice event carries the whole invoice), so this is one statement per kind."""
        # Events from before snapshots (v1) carry none: they leave the row as it is, and such a
        # deletion marks the row it finds.
        upserts = [self._row(s) for s in batch if s.event.data.get("invoice")]
        bare = [
            (s.stream_id, s.version)
            for s in batch
            if s.event.type == "invoice.deleted" and not s.event.data.get("invoice")
        ]
        if upserts:
            await conn.executemany(UPSERT_INVOICE, upserts)
        if bare:
            await conn.executemany(
                "UPDATE invoice_list SET deleted = true, version = $2 WHERE invoice_id = $1 AND version < $2", bare
            )

    @staticmethod
    def _row(stored: StoredEvent) -> tuple:
        v = stored.event.data["invoice"]
        customer = v.get("customer") or {}
        return (
            v["id"],
            stored.event.tenantid,
            v.get("number"),
            v["status"],
            customer.get("id"),
            customer.get("name"),
            customer.get("email"),
            v.get("reference"),
            v["currency"],
            v["total"],
            v["amountPaid"],
            v["amountDue"],
            v.get("dueDate"),
            datetime.fromisoformat(v["createdAt"]),
            datetime.fromisoformat(v["updatedAt"]),
            _search(customer.get("name"), customer.get("email"), v.get("number"), v.get("reference")),
            v,
            stored.version,
            stored.event.type == "invoice.deleted",
            v.get("subscriptionId"),
        )

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("TRUNCATE invoice_list")


UPSERT_INVOICE = """INSERT INTO invoice_list (invoice_id, tenant_id, number, status, customer_id, customer_name,
                                         customer_email, reference, currency, total, amount_paid, amount_due,
                                         due_date, created_at, updated_at, search, view, version, deleted,
                                         subscription_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::date, $14, $15, $16, $17, $18, $19,
                       $20)
               ON CONFLICT (invoice_id) DO UPDATE SET
                 number = EXCLUDED.number, status = EXCLUDED.status, customer_id = EXCLUDED.customer_id,
                 customer_name = EXCLUDED.customer_name, customer_email = EXCLUDED.customer_email,
                 reference = EXCLUDED.reference, currency = EXCLUDED.currency, total = EXCLUDED.total,
                 amount_paid = EXCLUDED.amount_paid, amount_due = EXCLUDED.amount_due,
                 due_date = EXCLUDED.due_date, updated_at = EXCLUDED.updated_at,
                 search = EXCLUDED.search, view = EXCLUDED.view, version = EXCLUDED.version,
                 deleted = EXCLUDED.deleted
               WHERE invoice_list.version < EXCLUDED.version"""


class CustomerList(Projection):
    name = "customer_list"
    event_types = frozenset(
        {"customer.created", "customer.updated", "customer.credit_added", "customer.credit_applied", "customer.deleted"}
    )

    async def apply(self, conn: asyncpg.Connection, stored: StoredEvent) -> None:
        v = stored.event.data["customer"]
        await conn.execute(
            UPSERT_CUSTOMER,
            v["id"],
            stored.event.tenantid,
            v["name"],
            v.get("email"),
            datetime.fromisoformat(v["createdAt"]),
            _search(v["name"], v.get("email"), v["id"], v.get("externalId")),
            v,
            stored.version,
            v.get("externalId"),
            v.get("country"),
            v.get("currency"),
            stored.event.type == "customer.deleted",
        )

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("TRUNCATE customer_list")


UPSERT_CUSTOMER = """INSERT INTO customer_list (customer_id, tenant_id, name, email, created_at, search, view, version,
                                          external_id, country, currency, deleted)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (customer_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email,
                 search = EXCLUDED.search, view = EXCLUDED.view, version = EXCLUDED.version,
                 external_id = EXCLUDED.external_id, country = EXCLUDED.country, currency = EXCLUDED.currency,
                 deleted = EXCLUDED.deleted
               WHERE customer_list.version < EXCLUDED.version"""


class CreditNotes(Projection):
    """One row per credit note, at the version of its invoice's stream that last changed it."""

    name = "credit_notes"
    event_types = frozenset({"credit_note.created", "credit_note.voided"})

    async def apply(self, conn: asyncpg.Connection, stored: StoredEvent) -> None:
        v = with_defaults(stored.event.data["creditNote"])
        await conn.execute(
            """INSERT INTO credit_notes (credit_note_id, tenant_id, invoice_id, created_at, view, customer_id, type,
                                         status, reason_code, amount, currency, version)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (credit_note_id) DO UPDATE SET view = EXCLUDED.view, status = EXCLUDED.status,
                 version = EXCLUDED.version
               WHERE credit_notes.version < EXCLUDED.version""",
            v["id"],
            stored.event.tenantid,
            v["invoiceId"],
            datetime.fromisoformat(v["createdAt"]),
            v,
            v.get("customerId"),
            v["type"],
            v["status"],
            v["reasonCode"],
            v["amount"],
            v["currency"],
            stored.version,
        )

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("TRUNCATE credit_notes")


def with_defaults(note: dict) -> dict:
    """Notes from before status and reason codes: a refund's note, or a write-off's (the only
    adjustments then). Migration 1004 gives stored rows the same."""
    refund = note["type"] == "refund"
    defaults = {"status": "refunded" if refund else "adjusted", "reasonCode": "refund" if refund else "write_off"}
    return {**defaults, "voidedAt": None, **note}


class PlanList(Projection):
    name = "plan_list"
    event_types = frozenset(
        {"plan.created", "plan.updated", "plan.price_added", "plan.price_changed", "plan.price_removed", "plan.deleted"}
    )
    latest_per_stream = True

    async def apply(self, conn: asyncpg.Connection, stored: StoredEvent) -> None:
        v = stored.event.data["plan"]
        await conn.execute(
            """INSERT INTO plan_list (plan_id, tenant_id, code, name, interval, is_active, created_at, search, view,
                                      version, deleted)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               ON CONFLICT (plan_id) DO UPDATE SET name = EXCLUDED.name, interval = EXCLUDED.interval,
                 is_active = EXCLUDED.is_active, search = EXCLUDED.search, view = EXCLUDED.view,
                 version = EXCLUDED.version, deleted = EXCLUDED.deleted
               WHERE plan_list.version < EXCLUDED.version""",
            v["id"],
            stored.event.tenantid,
            v["code"],
            v["name"],
            v["interval"],
            v["isActive"],
            datetime.fromisoformat(v["createdAt"]),
            _search(v["code"], v["name"]),
            v,
            stored.version,
            stored.event.type == "plan.deleted",
        )

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("TRUNCATE plan_list")


class SubscriptionList(Projection):
    name = "subscription_list"
    event_types = frozenset(
        {
            "subscription.created",
            "subscription.trial_ending",
            "subscription.renewed",
            "subscription.changed",
            "subscription.paused",
            "subscription.resumed",
            "subscription.past_due",
            "subscription.recovered",
            "subscription.canceled",
            "subscription.ended",
        }
    )
    latest_per_stream = True

    async def apply(self, conn: asyncpg.Connection, stored: StoredEvent) -> None:
        v = stored.event.data["subscription"]
        end = v.get("currentPeriodEnd")
        await conn.execute(
            """INSERT INTO subscription_list (subscription_id, tenant_id, customer_id, plan_id, next_plan_id, status,
                                              currency, current_period_end, created_at, view, version)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               ON CONFLICT (subscription_id) DO UPDATE SET plan_id = EXCLUDED.plan_id,
                 next_plan_id = EXCLUDED.next_plan_id, status = EXCLUDED.status,
                 current_period_end = EXCLUDED.current_period_end, view = EXCLUDED.view, version = EXCLUDED.version
               WHERE subscription_list.version < EXCLUDED.version""",
            v["id"],
            stored.event.tenantid,
            v["customerId"],
            v["planId"],
            v.get("pendingPlanId"),
            v["status"],
            v["currency"],
            datetime.fromisoformat(end) if end else None,
            datetime.fromisoformat(v["createdAt"]),
            v,
            stored.version,
        )

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("TRUNCATE subscription_list")
