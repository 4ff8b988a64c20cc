"""The webhooks tables on a real PostgreSQL, without the service process: what the consumer
writes for an event (once, whatever the redeliveries), the invoice snapshot kept for reminders
(a newer sequence wins), and the retention purge that never touches pending work."""

import asyncio
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from services.webhooks.app.delivery import DeliveryWorker
from services.webhooks.app.housekeeping import Housekeeping
from services.webhooks.app.signing import new_secret
from services.webhooks.consumers.events import public_event_handler
from services.webhooks.domain.events import registry
from services.webhooks.settings import DEV_SECRETS_KEY
from shared.aggregate import Aggregates
from shared.db import migrate
from shared.eventstore import EventStore
from shared.inbox import Delivery, InboxConsumer
from shared.vault import Vault
from tests.support.webhooks_events import event, invoice_event, invoice_snapshot

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "webhooks" / "migrations"
AGGREGATES = Aggregates(EventStore({"webhook_endpoint": "test.unused"}), registry, "/billstream/webhooks")
TENANT = "ten_store"


@pytest.fixture
async def wpool(database, pool):
    await migrate(database, MIGRATIONS)
    await pool.execute("INSERT INTO tenants (tenant_id, name, created_at) VALUES ($1, 'Store Ltd', now())", TENANT)
    await pool.execute(
        """INSERT INTO webhook_endpoints (endpoint_id, tenant_id, url, secret, enabled_events)
           VALUES ('we_inv', $1, 'http://127.0.0.1:9/a', $2, '{invoice.*}'),
                  ('we_all', $1, 'http://127.0.0.1:9/b', $2, '{*}'),
                  ('we_off', $1, 'http://127.0.0.1:9/c', $2, '{*}'),
                  ('we_other', 'ten_other', 'http://127.0.0.1:9/d', $2, '{*}')""",
        TENANT,
        Vault(DEV_SECRETS_KEY).encrypt_text(new_secret()),
    )  # as the API stores them
    await pool.execute("UPDATE webhook_endpoints SET enabled = false WHERE endpoint_id = 'we_off'")
    return pool


def consumer() -> InboxConsumer:
    handler = public_event_handler(
        emails=True,
        public_url="https://b.example",
        pay_link_secret="s3cret",
        default_locale="en",
        from_address="billing@b.example",
    )
    return InboxConsumer("webhooks.test", handler)


async def test_an_event_becomes_deliveries_an_email_and_a_kept_event_once(wpool):
    inv = invoice_snapshot()
    sent = invoice_event("invoice.sent", TENANT, inv, sequence=3)
    c = consumer()
    for _ in range(3):  # redelivered by Kafka: the inbox makes the repeats no-ops
        await c.process(wpool, sent.to_json(), Delivery("billing.invoices"))
    rows = await wpool.fetch("SELECT endpoint_id, status, payload FROM webhook_deliveries ORDER BY endpoint_id")
    assert [(r["endpoint_id"], r["status"]) for r in rows] == [("we_all", "pending"), ("we_inv", "pending")]
    emails = await wpool.fetch("SELECT kind, recipient, sender FROM customer_emails")
    assert [(e["kind"], e["recipient"]) for e in emails] == [("invoice_sent", "nakato@example.com")]
    assert emails[0]["sender"] == "Store Ltd <billing@b.example>"
    assert await wpool.fetchval("SELECT count(*) FROM webhook_events") == 1

    payment = event("payment.succeeded", TENANT, inv["id"], {"paymentId": "pay_1"})
    await c.process(wpool, payment.to_json(), Delivery("billing.payments"))
    assert await wpool.fetchval(
        "SELECT array_agg(endpoint_id) FROM webhook_deliveries WHERE event_id = $1", payment.id
    ) == ["we_all"]


async def test_the_newest_invoice_snapshot_wins_whatever_the_arrival_order(wpool):
    inv = invoice_snapshot()
    newer = invoice_event("invoice.paid", TENANT, {**inv, "status": "PAID"}, sequence=6)
    older = invoice_event("invoice.sent", TENANT, {**inv, "status": "PENDING"}, sequence=3)
    c = consumer()
    await c.process(wpool, newer.to_json(), Delivery("billing.invoices"))
    await c.process(wpool, older.to_json(), Delivery("billing.invoices"))
    row = await wpool.fetchrow("SELECT version, snapshot FROM invoice_snapshots WHERE invoice_id = $1", inv["id"])
    assert row["version"] == 6 and row["snapshot"]["status"] == "PAID"
    # So a late reminder for the paid invoice sends nothing.
    reminder = event(
        "dunning.reminder_due", TENANT, inv["id"], {"invoiceId": inv["id"], "kind": "after_due", "days": 2}
    )
    await c.process(wpool, reminder.to_json(), Delivery("billing.dunning"))
    assert await wpool.fetchval("SELECT count(*) FROM customer_emails WHERE kind = 'reminder'") == 0


async def test_retention_purges_old_finished_records_and_keeps_pending_ones(wpool):
    c = consumer()
    events = [invoice_event("invoice.sent", TENANT, invoice_snapshot()) for _ in range(3)]
    for e in events:
        await c.process(wpool, e.to_json(), Delivery("billing.invoices"))
    old_done, old_pending, recent = (e.id for e in events)
    await wpool.execute(
        """UPDATE webhook_deliveries SET status = 'succeeded', updated_at = now() - interval '40 days'
            WHERE event_id = $1""",
        old_done,
    )
    await wpool.execute(
        "UPDATE webhook_deliveries SET updated_at = now() - interval '40 days' WHERE event_id = $1", old_pending
    )
    await wpool.execute(
        "UPDATE webhook_events SET received_at = now() - interval '40 days' WHERE event_id <> $1", recent
    )
    await wpool.execute(
        """INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms)
           SELECT delivery_id, 1, 200, 5 FROM webhook_deliveries WHERE event_id = $1""",
        old_done,
    )
    await wpool.execute(
        "UPDATE customer_emails SET status = 'sent', created_at = now() - interval '40 days' WHERE event_id = $1",
        old_done,
    )

    counts = await Housekeeping(wpool, retention_days=30).purge()
    assert counts == {"attempts": 2, "deliveries": 2, "events": 1, "emails": 1}
    left = {r["event_id"] for r in await wpool.fetch("SELECT event_id FROM webhook_deliveries")}
    assert left == {old_pending, recent}
    assert {r["event_id"] for r in await wpool.fetch("SELECT event_id FROM webhook_events")} == {old_pending, recent}
    assert await Housekeeping(wpool, retention_days=30).purge() == {
        "attempts": 0,
        "deliveries": 0,
        "events": 0,
        "emails": 0,
    }


async def test_an_invoice_snapshot_the_email_cannot_use_still_gets_its_webhooks(wpool):
    broken = invoice_snapshot(dueDate="not a date")
    sent = invoice_event("invoice.sent", TENANT, broken, sequence=3)
    assert await consumer().process(wpool, sent.to_json(), Delivery("billing.invoices"))
    assert await wpool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE event_id = $1", sent.id) == 2
    assert await wpool.fetchval("SELECT count(*) FROM customer_emails") == 0
    assert await wpool.fetchval("SELECT count(*) FROM dead_letters") == 0


async def test_each_attempt_checks_the_address_again_unless_private_ones_are_allowed(database, wpool):
    await consumer().process(
        wpool, invoice_event("invoice.created", TENANT, invoice_snapshot()).to_json(), Delivery("billing.invoices")
    )
    worker = DeliveryWorker(database, wpool, AGGREGATES, allow_private=False, schedule=[60])
    claimed = await worker.claim(10)
    assert sorted(r["endpoint_id"] for r in claimed) == ["we_all", "we_inv"]
    assert await worker.claim(10) == []  # leased
    async with worker.client() as client:  # the worker's own client vets at connect time
        for row in claimed:
            await worker.attempt(client, row)
    attempts = await wpool.fetch("SELECT status_code, error FROM webhook_attempts")
    assert len(attempts) == 2
    assert all(a["status_code"] is None and a["error"].startswith("url_not_public: 127.0.0.1") for a in attempts)
    pending = await wpool.fetch("SELECT status, attempts, last_error FROM webhook_deliveries")
    assert all(p["status"] == "pending" and p["attempts"] == 1 for p in pending)  # retried later, on schedule


async def test_only_the_first_4_kib_of_an_answer_is_read_and_logged(database, wpool):
    """A receiver announcing a huge body and sending more than the cap, then stalling: the attempt
    reads up to the cap and moves on (no waiting for the rest), and the log keeps only that."""
    server = await asyncio.start_server(_huge_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await wpool.execute(
        "UPDATE webhook_endpoints SET url = $1 WHERE endpoint_id = 'we_inv'", f"http://hooks.example:{port}/"
    )
    await consumer().process(
        wpool, invoice_event("invoice.created", TENANT, invoice_snapshot()).to_json(), Delivery("billing.invoices")
    )

    async def loopback(host, port):  # an injected resolver: no DNS
        return ["127.0.0.1"]

    worker = DeliveryWorker(database, wpool, AGGREGATES, timeout=3, allow_private=True, resolve=loopback, schedule=[60])
    try:
        async with worker.client() as client:
            for row in await worker.claim(10):
                if row["endpoint_id"] == "we_inv":  # we_all's delivery is left pending
                    await worker.attempt(client, row)
    finally:
        server.close()
    [attempt] = await wpool.fetch("SELECT status_code, error, response_body FROM webhook_attempts")
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["response_body"] == "y" * 4096


async def _huge_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\n" + b"y" * 10000)
    await writer.drain()
    await asyncio.sleep(10)  # never the rest
    writer.close()


async def test_endpoint_secrets_are_encrypted_at_rest_and_old_rows_are_encrypted_once(database, wpool):
    """Rows written before secrets were encrypted are sealed by the worker at start; a secret no
    configured key opens fails its attempt visibly instead of stopping the worker."""
    old = new_secret()
    await wpool.execute(
        "UPDATE webhook_endpoints SET secret = $1, previous_secret = $1 WHERE endpoint_id = 'we_inv'", old
    )
    worker = DeliveryWorker(database, wpool, AGGREGATES, timeout=3, allow_private=True, schedule=[60])
    assert await worker.encrypt_plaintext_secrets() == 1
    assert await worker.encrypt_plaintext_secrets() == 0  # already sealed
    rows = await wpool.fetch("SELECT secret, previous_secret FROM webhook_endpoints")
    assert not any("whsec_" in (r["secret"] or "") + (r["previous_secret"] or "") for r in rows)
    row = await wpool.fetchrow("SELECT secret FROM webhook_endpoints WHERE endpoint_id = 'we_inv'")
    assert worker.vault.decrypt_text(row["secret"]) == old

    await consumer().process(
        wpool, invoice_event("invoice.created", TENANT, invoice_snapshot()).to_json(), Delivery("billing.invoices")
    )
    stranger = DeliveryWorker(
        database,
        wpool,
        AGGREGATES,
        timeout=3,
        allow_private=True,
        schedule=[60],
        vault=Vault(Fernet.generate_key().decode()),
    )
    async with stranger.client() as client:
        for row in await stranger.claim(10):
            if row["endpoint_id"] == "we_inv":
                await stranger.attempt(client, row)
    [attempt] = await wpool.fetch("SELECT status_code, error FROM webhook_attempts")
    assert attempt["status_code"] is None and attempt["error"].startswith("secret_undecryptable")
