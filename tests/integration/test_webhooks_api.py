"""Webhook endpoints through the real service process: CRUD, validation, tenant isolation,
signed delivery verified by an independent receiver, the delivery log, and secret rotation."""

from datetime import UTC, datetime

import asyncpg

from tests.conftest import eventually
from tests.support.webhooks_events import event, invoice_event, invoice_snapshot
from tests.support.webhooks_receivers import Receiver
from tests.support.webhooks_service import add_tenant, start_webhooks  # noqa: F401 - fixture


async def test_endpoints_crud_validation_isolation_and_signed_delivery(start_webhooks, database):
    svc = await start_webhooks()
    tenant, key = await add_tenant(database, "Acme Uganda")
    _, other_key = await add_tenant(database, "Other Ltd")
    with Receiver() as receiver:
        async with svc.client(key) as api, svc.client(other_key) as other:
            r = await api.post("/api/webhook-endpoints", json={"url": "ftp://example.com/x"})
            assert r.status_code == 400 and r.json()["error"] | {"message": None} == {
                "type": "invalid_request_error",
                "code": "url_invalid",
                "message": None,
                "field": "url",
            }
            r = await api.post("/api/webhook-endpoints", json={"url": receiver.url, "enabledEvents": ["invoice.payed"]})
            assert r.status_code == 400 and r.json()["error"]["code"] == "event_filter_invalid"
            assert r.json()["error"]["field"] == "enabledEvents.0"
            r = await api.post("/api/webhook-endpoints", json={"url": receiver.url, "colour": "red"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_invalid"

            r = await api.post(
                "/api/webhook-endpoints",
                json={"url": receiver.url, "enabledEvents": ["invoice.*"], "description": "accounting sync"},
            )
            assert r.status_code == 201, r.text
            created = r.json()
            assert (
                created["secret"].startswith("whsec_") and created["enabled"] is True and created["livemode"] is False
            )
            assert created["enabledEvents"] == ["invoice.*"] and created["description"] == "accounting sync"
            assert created["createdAt"].endswith("Z") and created["id"].startswith("we_")
            endpoint_id = created["id"]
            receiver.secrets = [created["secret"]]
            [raw] = await _fetch(database, "SELECT secret FROM webhook_endpoints WHERE endpoint_id = $1", endpoint_id)
            assert "whsec_" not in raw["secret"]  # encrypted at rest, yet deliveries below verify

            # Idempotency-Key: a retried POST replays the first answer instead of a second endpoint.
            again_body = {"url": receiver.url, "description": "retried"}
            first = await api.post("/api/webhook-endpoints", json=again_body, headers={"Idempotency-Key": "k-1"})
            again = await api.post("/api/webhook-endpoints", json=again_body, headers={"Idempotency-Key": "k-1"})
            assert first.status_code == again.status_code == 201 and again.json() == first.json()
            assert again.headers.get("idempotent-replayed") == "true"
            other_body = await api.post(
                "/api/webhook-endpoints", json={"url": receiver.url}, headers={"Idempotency-Key": "k-1"}
            )
            assert other_body.status_code == 422 and other_body.json()["error"]["code"] == "idempotency_key_reused"
            assert (await api.delete(f"/api/webhook-endpoints/{first.json()['id']}")).status_code == 204

            fetched = (await api.get(f"/api/webhook-endpoints/{endpoint_id}")).json()
            assert "secret" not in fetched and fetched["url"] == receiver.url
            listed = (await api.get("/api/webhook-endpoints")).json()
            assert [e["id"] for e in listed["data"]] == [endpoint_id] and "secret" not in listed["data"][0]

            # Another tenant's id answers 404, whatever the method.
            for method, path in [
                ("GET", f"/api/webhook-endpoints/{endpoint_id}"),
                ("PATCH", f"/api/webhook-endpoints/{endpoint_id}"),
                ("DELETE", f"/api/webhook-endpoints/{endpoint_id}"),
                ("GET", f"/api/webhook-endpoints/{endpoint_id}/deliveries"),
                ("POST", f"/api/webhook-endpoints/{endpoint_id}/rotate-secret"),
            ]:
                r = await other.request(method, path, json={"description": "x"} if method == "PATCH" else None)
                assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing", (method, path)
            assert (await other.get("/api/webhook-endpoints")).json()["data"] == []

            invoice = invoice_snapshot()
            created_evt = invoice_event("invoice.created", tenant, invoice, sequence=1)
            paid_part = invoice_event(
                "invoice.payment_received",
                tenant,
                {**invoice, "status": "PARTIALLY_PAID", "amountPaid": 80000, "amountDue": 100000},
                sequence=2,
                paymentId="pay_1",
                amount=80000,
                method="card",
                isPartial=True,
                isFullyPaid=False,
                amountPaid=80000,
                amountDue=100000,
            )
            payment = event("payment.succeeded", tenant, invoice["id"], {"paymentId": "pay_1"})
            await svc.publish("invoices", created_evt, paid_part)
            await svc.publish("payments", payment)

            await eventually(lambda: _at_least(receiver, 2))
            # Nothing else: once the inbox shows all three handled (deliveries are written in
            # that same transaction) and none is pending, payment.succeeded made no delivery.
            handled = [created_evt.id, paid_part.id, payment.id]
            await eventually(lambda: _handled_and_settled(database, handled))
            rows = await _fetch(database, "SELECT event_id, status FROM webhook_deliveries")
            assert sorted((r["event_id"], r["status"]) for r in rows) == sorted(
                [(created_evt.id, "succeeded"), (paid_part.id, "succeeded")]
            )
            hits = receiver.verified_hits()
            assert sorted(h.webhook_id for h in hits) == sorted([created_evt.id, paid_part.id])
            assert len(receiver.hits) == 2
            by_id = {h.webhook_id: h for h in hits}
            body = by_id[paid_part.id].payload
            assert body == {
                "id": paid_part.id,
                "type": "invoice.payment_received",
                "livemode": False,
                "createdAt": paid_part.model_dump(mode="json")["time"],
                "data": paid_part.data,
            }
            assert body["data"]["isPartial"] is True and body["data"]["isFullyPaid"] is False
            assert by_id[created_evt.id].headers["webhook-signature"].startswith("v1,")

            async def log_complete():
                data = (await api.get(f"/api/webhook-endpoints/{endpoint_id}/deliveries")).json()["data"]
                return data if len(data) == 2 and all(d["status"] == "succeeded" for d in data) else None

            deliveries = await eventually(log_complete)
            for d in deliveries:
                assert d["endpointId"] == endpoint_id and d["attemptCount"] == 1
                [attempt] = d["attempts"]
                assert attempt["statusCode"] == 200 and attempt["error"] is None
                assert attempt["attemptedAt"].endswith("Z") and d["createdAt"].endswith("Z")
                assert isinstance(attempt["latencyMs"], int) and attempt["latencyMs"] >= 0
            one = (await api.get(f"/api/webhook-deliveries/{deliveries[0]['id']}")).json()
            assert one["id"] == deliveries[0]["id"]
            assert (await other.get(f"/api/webhook-deliveries/{deliveries[0]['id']}")).status_code == 404
            page = (await api.get(f"/api/webhook-endpoints/{endpoint_id}/deliveries", params={"limit": 1})).json()
            assert page["meta"]["hasMore"] is True and page["meta"]["total"] == 2 and len(page["data"]) == 1
            by_cursor = (
                await api.get(
                    f"/api/webhook-endpoints/{endpoint_id}/deliveries",
                    params={"limit": 1, "cursor": page["meta"]["nextCursor"]},
                )
            ).json()
            rest = (
                await api.get(
                    f"/api/webhook-endpoints/{endpoint_id}/deliveries",
                    params={"limit": 1, "startingAfter": page["data"][0]["id"]},
                )
            ).json()
            assert rest["meta"]["hasMore"] is False and rest["data"][0]["id"] != page["data"][0]["id"]
            assert by_cursor["data"] == rest["data"]  # startingAfter=<id> is the cursor it stands for

            r = await api.patch(
                f"/api/webhook-endpoints/{endpoint_id}",
                json={"enabledEvents": ["payment.*", "invoice.paid"], "description": None},
            )
            assert r.status_code == 200, r.text
            assert r.json()["enabledEvents"] == ["invoice.paid", "payment.*"] and r.json()["description"] is None
            r = await api.patch(f"/api/webhook-endpoints/{endpoint_id}", json={})
            assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_missing"
            r = await api.patch(f"/api/webhook-endpoints/{endpoint_id}", json={"url": "http://"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "url_invalid"

            assert (await api.delete(f"/api/webhook-endpoints/{endpoint_id}")).status_code == 204
            assert (await api.get(f"/api/webhook-endpoints/{endpoint_id}")).status_code == 404
            assert (await api.get("/api/webhook-endpoints")).json()["data"] == []
            assert (
                await api.get("/api/webhook-endpoints", headers={"Authorization": "Bearer sk_test_nope"})
            ).status_code == 401


async def test_rotated_secret_signs_alongside_the_old_one_until_it_expires(start_webhooks, database):
    # A long overlap, ended below by moving its expiry into the past: no race with a slow first
    # delivery, no sleeping through it.
    svc = await start_webhooks(secret_overlap_s=600)
    tenant, key = await add_tenant(database, "Rotating Ltd")
    with Receiver() as receiver:
        async with svc.client(key) as api:
            created = (await api.post("/api/webhook-endpoints", json={"url": receiver.url})).json()
            old = created["secret"]
            rotated = (await api.post(f"/api/webhook-endpoints/{created['id']}/rotate-secret")).json()
            new = rotated["secret"]
            assert new.startswith("whsec_") and new != old and rotated["previousSecretExpiresAt"]
            overlap_ends = datetime.fromisoformat(rotated["previousSecretExpiresAt"].replace("Z", "+00:00"))
            assert 600 - 60 <= (overlap_ends - datetime.now(UTC)).total_seconds() <= 600  # the configured overlap
            assert "secret" not in (await api.get(f"/api/webhook-endpoints/{created['id']}")).json()

            # A receiver still configured with the old secret keeps verifying during the overlap.
            receiver.secrets = [old, new]
            first = invoice_event("invoice.created", tenant, invoice_snapshot())
            await svc.publish("invoices", first)
            await eventually(lambda: _at_least(receiver, 1))
            hit = receiver.hits[0]
            assert set(hit.verified_with) == {old, new}
            assert len(hit.headers["webhook-signature"].split(" ")) == 2

            # The overlap ends (as if its 600 s had passed): only the new secret signs.
            await _fetch(
                database,
                "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 second' "
                "WHERE endpoint_id = $1",
                created["id"],
            )
            second = invoice_event("invoice.created", tenant, invoice_snapshot())
            await svc.publish("invoices", second)
            await eventually(lambda: _at_least(receiver, 2))
            assert receiver.hits[1].verified_with == [new]
            assert len(receiver.hits[1].headers["webhook-signature"].split(" ")) == 1


async def _at_least(receiver: Receiver, n: int) -> bool:
    return len(receiver.hits) >= n


async def _fetch(dsn: str, sql: str, *args) -> list:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _handled_and_settled(dsn: str, event_ids: list[str]) -> bool:
    """Every event handled by some consumer of the service, and no delivery still pending."""
    handled = await _fetch(dsn, "SELECT DISTINCT event_id FROM inbox WHERE event_id = ANY($1)", event_ids)
    pending = await _fetch(dsn, "SELECT 1 FROM webhook_deliveries WHERE status = 'pending'")
    return len(handled) == len(event_ids) and not pending


async def test_unsafe_or_malformed_urls_answer_400_at_create_and_update(start_webhooks, database):
    """Production settings (private addresses refused): literal internal addresses, legacy numeric
    IPv4 forms and an out-of-range port answer 400 with a stable code, never 500. No DNS is asked."""
    svc = await start_webhooks(allow_private_urls=False)
    _, key = await add_tenant(database, "Careful Ltd")
    bad = {
        "http://100.100.100.200/latest/meta-data": "url_not_public",
        "http://[::ffff:127.0.0.1]/hook": "url_not_public",
        "http://[64:ff9b::a9fe:a9fe]/hook": "url_not_public",
        "http://2130706433/": "url_invalid",
        "http://0/": "url_invalid",
        "http://93.184.215.14:99999/hook": "url_invalid",
    }
    async with svc.client(key) as api:
        ep = await api.post("/api/webhook-endpoints", json={"url": "https://93.184.215.14/hook"})
        assert ep.status_code == 201, ep.text  # a public literal: saved (nothing is sent to it here)
        for url, code in bad.items():
            for r in (
                await api.post("/api/webhook-endpoints", json={"url": url}),
                await api.patch(f"/api/webhook-endpoints/{ep.json()['id']}", json={"url": url}),
            ):
                assert r.status_code == 400, (url, r.text)
                assert r.json()["error"] | {"message": None} == {
                    "type": "invalid_request_error",
                    "code": code,
                    "message": None,
                    "field": "url",
                }, url
        assert (await api.delete(f"/api/webhook-endpoints/{ep.json()['id']}")).status_code == 204
