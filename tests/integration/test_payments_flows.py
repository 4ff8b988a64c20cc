"""Payments end to end against a real payments process, PostgreSQL and Kafka: invoice events in,
the sandbox provider's asynchronous charges and signed callbacks, payment events out."""

import asyncio
import contextlib
import json

import httpx

from services.payments.providers import signing
from tests.conftest import eventually
from tests.support.kafka import read_topic
from tests.support.payments_server import invoice, payments_server  # noqa: F401

SUCCEEDS, DECLINED, RETRY = "4242424242424242", "4000000000000002", "4000000000000119"
MM_OK, MM_NO_FUNDS, MM_TIMEOUT = "256700000001", "256700000002", "256700000003"


async def payable(server, invoice_id: str):
    async def check():
        rows = await server.fetch("SELECT * FROM payable_invoices WHERE invoice_id = $1", invoice_id)
        return rows[0] if rows else None

    return await eventually(check)


async def settled(client: httpx.AsyncClient, payment_id: str, timeout: float = 20) -> dict:
    async def check():
        p = (await client.get(f"/api/payments/{payment_id}")).json()
        return p if p["status"] not in ("PENDING", "PROCESSING") else None

    return await eventually(check, timeout=timeout, interval=0.2)


async def payment_events(server, at_least: int) -> list[dict]:
    records = await read_topic(server.kafka, server.topics["payments"], at_least=at_least)
    return [{"key": r.key.decode(), **json.loads(r.value)} for r in records]


async def pay_on_page(server, checkout_url: str, amount: str | None, method: str, number: str) -> httpx.Response:
    form = {"method": method, "card_number" if method == "card" else "mobile_number": number}
    if amount is not None:
        form["amount"] = amount
    async with httpx.AsyncClient(follow_redirects=False) as browserless:
        return await browserless.post(checkout_url, data=form)


async def open_invoice(server, tenant_id, **kw) -> dict:
    inv = invoice(**kw)
    await server.publish_invoice(
        tenant_id, "invoice.finalized", inv, number=inv["number"], finalizedAt=inv["createdAt"]
    )
    await payable(server, inv["id"])
    return inv


async def collecting_by_card(server, **invoice_kw) -> tuple[httpx.AsyncClient, dict, httpx.Response | None]:
    """A tenant's open invoice for cust_1, who has a card that succeeds on file, then collect:
    the client, the invoice and the answer (None when the process died under the request)."""
    tenant, client = await server.tenant()
    inv = await open_invoice(server, tenant, **invoice_kw)
    await client.post("/api/payment-methods", json={"customerId": "cust_1", "type": "card", "number": SUCCEEDS})
    try:
        return client, inv, await client.post(f"/api/invoices/{inv['id']}/collect")
    except httpx.HTTPError:
        return client, inv, None  # a failpoint killed the process mid-request


async def test_saved_card_collect_succeeds_and_publishes_keyed_by_invoice(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    inv = await open_invoice(server, tenant, customer_id="cust_ok")
    r = await client.post("/api/payment-methods", json={"customerId": "cust_ok", "type": "card", "number": SUCCEEDS})
    assert r.status_code == 201, r.text
    assert r.json()["label"].endswith("4242")
    r = await client.post(f"/api/invoices/{inv['id']}/collect")
    assert r.status_code == 201, r.text
    payment = await settled(client, r.json()["id"])
    assert payment["status"] == "SUCCEEDED" and payment["amount"] == 180000 and payment["provider"] == "sandbox"

    events = await payment_events(server, at_least=3)
    mine = [e for e in events if e["subject"] == payment["id"]]
    assert [e["type"] for e in mine] == ["payment.created", "payment.processing", "payment.succeeded"]
    assert {e["key"] for e in mine} == {inv["id"]}  # keyed by the invoice id
    # The worker's and the callback's events carry the correlation id of the collect request.
    assert {e["correlationid"] for e in mine} == {r.headers["x-correlation-id"]}
    done = mine[-1]["data"]
    assert (done["paymentId"], done["invoiceId"], done["amount"], done["currency"], done["method"]) == (
        payment["id"],
        inv["id"],
        180000,
        "UGX",
        "card",
    )
    assert done["payment"]["status"] == "SUCCEEDED"

    # Nothing is left to collect now.
    r = await client.post(f"/api/invoices/{inv['id']}/collect")
    assert r.status_code == 409 and r.json()["error"]["code"] == "invoice_already_paid"


async def test_automatic_collection_declined_then_dunning_retry_succeeds(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    await client.post("/api/payment-methods", json={"customerId": "cust_auto", "type": "card", "number": RETRY})
    inv = invoice(customer_id="cust_auto", auto_collection=True, total=50000)
    await server.publish_invoice(tenant, "invoice.finalized", inv, number=inv["number"])

    async def payments_of(status):
        r = await client.get("/api/payments", params={"invoiceId": inv["id"], "status": status})
        return r.json()["data"]

    failed = (await eventually(lambda: payments_of("FAILED"), timeout=30))[0]
    assert failed["failureCode"] == "try_again_later" and failed["automatic"] and failed["attempt"] == 1

    await server.publish_dunning(tenant, "dunning.retry_due", inv["id"], attempt=2)
    succeeded = (await eventually(lambda: payments_of("SUCCEEDED"), timeout=30))[0]
    assert succeeded["automatic"] and succeeded["attempt"] == 2 and succeeded["amount"] == 50000

    # A retry that comes after the invoice is paid charges nothing.
    await server.publish_dunning(tenant, "dunning.retry_due", inv["id"], attempt=3)
    marker = invoice(customer_id="cust_auto")  # an event after it on the same topic, to know it was handled
    await server.publish_invoice(tenant, "invoice.created", {**marker, "status": "DRAFT"})
    await payable(server, marker["id"])
    await eventually(
        lambda: server.fetch(
            "SELECT 1 FROM inbox WHERE consumer LIKE '%.dunning' GROUP BY consumer HAVING count(*) = 2"
        )
    )
    assert (await client.get("/api/payments", params={"invoiceId": inv["id"]})).json()["meta"]["total"] == 2

    events = await payment_events(server, at_least=6)
    failure = next(e for e in events if e["type"] == "payment.failed")
    assert failure["data"]["reasonCode"] == "try_again_later" and failure["data"]["automatic"] is True
    assert failure["data"]["attempt"] == 1 and failure["key"] == inv["id"]


async def test_auto_collection_without_a_saved_method_reports_failure(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    inv = invoice(customer_id="cust_none", auto_collection=True)
    await server.publish_invoice(tenant, "invoice.finalized", inv)

    async def failed():
        data = (await client.get("/api/payments", params={"invoiceId": inv["id"]})).json()["data"]
        return data if data and data[0]["status"] == "FAILED" else None

    [payment] = await eventually(failed, timeout=30)
    assert payment["failureCode"] == "payment_method_missing" and payment["automatic"]


async def test_declined_card_and_insufficient_mobile_money_fail_with_reason(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    inv = await open_invoice(server, tenant)
    checkout = (await client.post(f"/api/invoices/{inv['id']}/checkout", json={})).json()
    r = await pay_on_page(server, checkout["checkoutUrl"], None, "card", DECLINED)
    assert r.status_code == 303
    payment_id = r.headers["location"].rsplit("/", 1)[1]
    assert (await settled(client, payment_id))["failureCode"] == "card_declined"
    r = await pay_on_page(server, checkout["checkoutUrl"], None, "mobile_money", MM_NO_FUNDS)
    payment_id = r.headers["location"].rsplit("/", 1)[1]
    failed = await settled(client, payment_id)
    assert failed["status"] == "FAILED" and failed["failureCode"] == "insufficient_funds"
    page = httpx.get(checkout["checkoutUrl"] + f"/payments/{payment_id}")
    assert "insufficient funds" in page.text and page.status_code == 200
    # A failed payment does not reduce the balance.
    page = httpx.get(checkout["checkoutUrl"])
    assert 'id="pay-form"' in page.text and "180,000" in page.text

    # The customer never approves the mobile-money prompt: it fails once the approval window ends.
    r = await pay_on_page(server, checkout["checkoutUrl"], None, "mobile_money", "256700000004")
    unapproved = await settled(client, r.headers["location"].rsplit("/", 1)[1])
    assert unapproved["failureCode"] == "approval_timeout"

    # An unknown test number is refused on the page; an expired link says so.
    r = await pay_on_page(server, checkout["checkoutUrl"], None, "card", "1234 5678 9012 3456")
    assert r.status_code == 400 and "Not a sandbox test card number" in r.text
    await server.fetch("UPDATE checkout_sessions SET expires_at = now() - interval '1 minute'")
    expired = httpx.get(checkout["checkoutUrl"])
    assert expired.status_code == 410 and "expired" in expired.text


async def test_timeout_then_late_success_charges_once(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    inv = await open_invoice(server, tenant)
    await client.post(
        "/api/payment-methods", json={"customerId": "cust_1", "type": "mobile_money", "number": MM_TIMEOUT}
    )
    r = await client.post(f"/api/invoices/{inv['id']}/collect")
    assert r.status_code == 201
    payment = r.json()
    # The API call timed out; at most the provider's "processing" callback has come in.
    assert payment["status"] in ("PENDING", "PROCESSING")
    jobs = await server.fetch("SELECT last_error FROM charge_jobs WHERE payment_id = $1", payment["id"])
    assert "did not answer" in jobs[0]["last_error"]
    succeeded = await settled(client, payment["id"], timeout=30)
    assert succeeded["status"] == "SUCCEEDED"
    charges = await server.fetch("SELECT * FROM sandbox_charges WHERE reference = $1", payment["id"])
    assert len(charges) == 1  # retried with the same idempotency key: one charge at the provider
    jobs = await server.fetch("SELECT attempts, done FROM charge_jobs WHERE payment_id = $1", payment["id"])
    assert jobs[0]["attempts"] >= 2 and jobs[0]["done"]
    events = await payment_events(server, at_least=3)
    assert [e["type"] for e in events if e["subject"] == payment["id"]].count("payment.succeeded") == 1


async def test_duplicate_callbacks_are_ignored_and_forged_ones_refused(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    inv = await open_invoice(server, tenant)
    await client.post("/api/payment-methods", json={"customerId": "cust_1", "type": "card", "number": SUCCEEDS})
    payment = await settled(client, (await client.post(f"/api/invoices/{inv['id']}/collect")).json()["id"])
    delivered = await server.fetch("SELECT body FROM sandbox_callbacks WHERE delivered_at IS NOT NULL ORDER BY id")
    final = bytes(delivered[-1]["body"])
    secret = "whsec_sandbox_local"
    async with httpx.AsyncClient(base_url=server.url) as raw:
        again = await raw.post(
            "/webhooks/sandbox", content=final, headers={"sandbox-signature": signing.sign(secret, final)}
        )
        assert again.status_code == 200 and again.json()["duplicate"] is True

        # A forged "failed" callback for the same payment: wrong secret, then altered body.
        forged = json.dumps(
            {
                "id": "evt_forged",
                "type": "charge.failed",
                "data": {"charge": {"id": "ch_x", "reference": payment["id"], "failureCode": "card_declined"}},
            }
        ).encode()
        r = await raw.post(
            "/webhooks/sandbox", content=forged, headers={"sandbox-signature": signing.sign("not-the-secret", forged)}
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "signature_invalid"
        r = await raw.post(
            "/webhooks/sandbox", content=forged + b" ", headers={"sandbox-signature": signing.sign(secret, forged)}
        )
        assert r.status_code == 400
        r = await raw.post("/webhooks/sandbox", content=forged)
        assert r.status_code == 400
        r = await raw.post("/webhooks/nosuchprovider", content=forged)
        assert r.status_code == 404
    assert (await client.get(f"/api/payments/{payment['id']}")).json()["status"] == "SUCCEEDED"
    events = await payment_events(server, at_least=3)
    assert [e["type"] for e in events if e["subject"] == payment["id"]] == [
        "payment.created",
        "payment.processing",
        "payment.succeeded",
    ]
    assert "provider callback refused" in server.log_path.read_text()


async def test_partial_payment_then_the_rest(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    inv = await open_invoice(server, tenant, total=100000, allow_partial=True)
    checkout = (await client.post(f"/api/invoices/{inv['id']}/checkout", json={})).json()
    assert checkout["amountDue"] == 100000 and checkout["checkoutUrl"].startswith(server.url + "/pay/")
    r = await pay_on_page(server, checkout["checkoutUrl"], "30000", "mobile_money", MM_OK)
    first = await settled(client, r.headers["location"].rsplit("/", 1)[1])
    assert first["status"] == "SUCCEEDED" and first["amount"] == 30000
    page = httpx.get(checkout["checkoutUrl"]).text
    assert 'value="70000"' in page  # UGX has no minor unit

    # Invoicing counts the first payment: its snapshot now says 70000 due. That snapshot and our
    # own record of the payment are one payment, not two: still 70000 to pay, not 40000.
    counted = {**inv, "status": "PARTIALLY_PAID", "amountPaid": 30000, "amountDue": 70000}
    await server.publish_invoice(tenant, "invoice.payment_received", counted, paymentId=first["id"], amount=30000)
    await eventually(lambda: server.fetch("SELECT 1 FROM invoice_payment_acks WHERE payment_id = $1", first["id"]))
    page = httpx.get(checkout["checkoutUrl"]).text
    assert 'value="70000"' in page and 'id="paid">UGX30,000<' in page and 'id="remaining">UGX70,000<' in page, page

    # Too much is refused on the page, with the form shown again.
    r = await pay_on_page(server, checkout["checkoutUrl"], "70001", "card", SUCCEEDS)
    assert r.status_code == 400 and "At most 70000" in r.text
    r = await pay_on_page(server, checkout["checkoutUrl"], None, "card", SUCCEEDS)
    second = await settled(client, r.headers["location"].rsplit("/", 1)[1])
    assert second["amount"] == 70000 and second["status"] == "SUCCEEDED"
    receipt = httpx.get(checkout["checkoutUrl"]).text
    assert 'id="receipt"' in receipt and 'id="pay-form"' not in receipt

    # Once invoicing counts the second too, the snapshot says the same; exactly what was paid.
    paid = {**inv, "status": "PAID", "amountPaid": 100000, "amountDue": 0}
    await server.publish_invoice(tenant, "invoice.payment_received", paid, paymentId=second["id"], amount=70000)
    await eventually(lambda: server.fetch("SELECT 1 FROM invoice_payment_acks WHERE payment_id = $1", second["id"]))
    assert 'id="receipt"' in httpx.get(checkout["checkoutUrl"]).text
    rows = await server.fetch(
        "SELECT amount FROM invoice_payments WHERE invoice_id = $1 AND status <> 'FAILED'", inv["id"]
    )
    assert sorted(r["amount"] for r in rows) == [30000, 70000]  # two payments, each once


async def test_full_payment_required_unless_partial_allowed(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    inv = await open_invoice(server, tenant, total=100000, allow_partial=False)
    checkout = (await client.post(f"/api/invoices/{inv['id']}/checkout", json={})).json()
    r = await pay_on_page(server, checkout["checkoutUrl"], "500", "card", SUCCEEDS)
    assert r.status_code == 400 and "must be paid in full" in r.text


async def test_refund_twice_up_to_the_amount_then_refused(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    inv = await open_invoice(server, tenant, currency="USD", total=10000)
    await client.post("/api/payment-methods", json={"customerId": "cust_1", "type": "card", "number": SUCCEEDS})
    payment = await settled(client, (await client.post(f"/api/invoices/{inv['id']}/collect")).json()["id"])
    r = await client.post(
        f"/api/payments/{payment['id']}/refund",
        json={"amount": 4000, "reason": "Overcharged"},
        headers={"Idempotency-Key": "refund-1"},
    )
    assert r.status_code == 201, r.text
    replay = await client.post(
        f"/api/payments/{payment['id']}/refund",
        json={"amount": 4000, "reason": "Overcharged"},
        headers={"Idempotency-Key": "refund-1"},
    )
    assert replay.status_code == 201 and replay.json()["id"] == r.json()["id"]  # the same refund, not a second
    assert r.json()["payment"]["status"] == "PARTIALLY_REFUNDED" and r.json()["payment"]["amountRefunded"] == 4000
    r = await client.post(f"/api/payments/{payment['id']}/refund", json={"amount": 6001, "reason": "Too much"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "refund_exceeds_payment"
    r = await client.post(f"/api/payments/{payment['id']}/refund", json={"reason": "The rest"})
    assert r.status_code == 201 and r.json()["amount"] == 6000
    assert r.json()["payment"]["status"] == "REFUNDED"
    r = await client.post(f"/api/payments/{payment['id']}/refund", json={"amount": 1, "reason": "Again"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "payment_not_refundable"
    jobs = await server.fetch("SELECT state FROM refund_jobs WHERE payment_id = $1", payment["id"])
    assert [j["state"] for j in jobs] == ["succeeded", "succeeded"]
    events = await payment_events(server, at_least=5)
    refunds = [e["data"] for e in events if e["type"] == "payment.refunded"]
    assert [(x["amount"], x["amountRefunded"]) for x in refunds] == [(4000, 4000), (6000, 10000)]
    assert all(x["invoiceId"] == inv["id"] and x["refundId"].startswith("re_") for x in refunds)
    refunded = await server.fetch("SELECT amount_refunded FROM sandbox_charges WHERE reference = $1", payment["id"])
    assert refunded[0]["amount_refunded"] == 10000


async def test_list_filters_pages_and_tenant_isolation(payments_server):
    server = payments_server
    tenant, client = await server.tenant()
    _other, other_client = await server.tenant("Other Ltd")
    await client.post("/api/payment-methods", json={"customerId": "cust_1", "type": "card", "number": SUCCEEDS})
    ids = []
    for _ in range(3):
        inv = await open_invoice(server, tenant, total=1000)
        ids.append((await client.post(f"/api/invoices/{inv['id']}/collect")).json()["id"])
    for pid in ids:
        await settled(client, pid)

    async def listed(**params):
        r = await client.get("/api/payments", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    async def all_listed():
        body = await listed(status="SUCCEEDED")
        return body if body["meta"]["total"] == 3 else None

    await eventually(all_listed)
    page = await listed(limit=2, page=2)
    assert len(page["data"]) == 1 and page["meta"] == {
        "page": 2,
        "limit": 2,
        "total": 3,
        "totalPages": 2,
        "hasMore": False,
        "nextCursor": None,
    }
    assert (await listed(provider="stripe"))["meta"]["total"] == 0
    assert (await listed(dateFrom="2020-01-01", dateTo="2020-01-02"))["meta"]["total"] == 0
    assert (await listed(dateFrom="2020-01-01"))["meta"]["total"] == 3
    r = await client.get("/api/payments", params={"status": "BOGUS"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "status"

    # Another tenant sees none of it.
    assert (await other_client.get("/api/payments")).json()["meta"]["total"] == 0
    r = await other_client.get(f"/api/payments/{ids[0]}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"
    r = await other_client.post(f"/api/payments/{ids[0]}/refund", json={"reason": "x"})
    assert r.status_code == 404
    r = await other_client.post(f"/api/invoices/{inv['id']}/checkout", json={})
    assert r.status_code == 404
    assert (await httpx.AsyncClient(base_url=server.url).get("/api/payments")).status_code == 401


async def test_lists_refuse_unknown_parameters_instead_of_listing_everything(payments_server):
    server = payments_server
    _, client = await server.tenant()
    await client.post("/api/payment-methods", json={"customerId": "cust_1", "type": "card", "number": SUCCEEDS})
    for path, params, unknown in (
        ("/api/payments", {"stauts": "SUCCEEDED"}, "stauts"),
        ("/api/payments", {"status": "SUCCEEDED", "invoice_id": "inv_1"}, "invoice_id"),
        ("/api/payment-methods", {"customerId": "cust_1", "type": "card"}, "type"),
        ("/api/payment-providers", {"provider": "stripe"}, "provider"),
    ):
        r = await client.get(path, params=params)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["code"], error["field"]) == ("parameter_unknown", unknown) and unknown in error["message"]
    r = await client.get("/api/payments", params={"stauts": "SUCCEEDED"})
    assert "dateFrom, dateTo, invoiceId, limit, page, provider, status" in r.json()["error"]["message"]

    # What each list declares still works; and without a key the answer is 401, whatever the query.
    r = await client.get("/api/payments", params={"status": "SUCCEEDED", "invoiceId": "inv_1", "page": 1, "limit": 5})
    assert r.status_code == 200, r.text
    assert len((await client.get("/api/payment-methods", params={"customerId": "cust_1"})).json()["data"]) == 1
    assert (await client.get("/api/payment-providers")).status_code == 200
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        assert (await anonymous.get("/api/payments", params={"stauts": "x"})).status_code == 401


async def test_crash_before_the_provider_call_loses_nothing_and_charges_once(database, kafka):
    from tests.support.payments_server import start_payments_server, stop_payments_server

    crashing = await start_payments_server(database, kafka, failpoints="payments.before_charge")
    try:
        client, _inv, _ = await collecting_by_card(crashing)
        assert await crashing.proc.wait() == 137
        [job] = await crashing.fetch("SELECT payment_id, done FROM charge_jobs")
        assert not job["done"] and await crashing.fetch("SELECT * FROM sandbox_charges") == []
    finally:
        await stop_payments_server(crashing)

    restarted = await start_payments_server(database, kafka, run=crashing.run)
    try:
        client = httpx.AsyncClient(base_url=restarted.url, headers=dict(client.headers))
        payment = await settled(client, job["payment_id"])
        assert payment["status"] == "SUCCEEDED"
        assert len(await restarted.fetch("SELECT * FROM sandbox_charges")) == 1
        events = await payment_events(restarted, at_least=3)
        # At least once: the relay may publish payment.created again after the crash; the id is the same.
        unique = {e["id"]: e["type"] for e in events if e["subject"] == payment["id"]}
        assert sorted(unique.values()) == ["payment.created", "payment.processing", "payment.succeeded"]
    finally:
        await stop_payments_server(restarted)


async def test_refund_after_a_provider_timeout_is_finished_by_the_worker_once(database, kafka):
    """A real refund whose answer never comes: the sandbox makes the refund, but the adapter times
    out, so the API leaves it pending and the worker repeats the call with the same key."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from tests.support.payments_fakes import LocalServer
    from tests.support.payments_server import start_payments_server, stop_payments_server

    upstream: list[str] = []  # the sandbox's URL, known once payments is up
    refund_keys: list[str] = []  # the Idempotency-Key of every refund call that reached the sandbox
    release = asyncio.Event()

    async def forward(request):
        """Pass every call on to the sandbox; the first refund's answer is held until the caller
        has long given up (so its timeout fires whatever the load), the refund itself made."""
        body, path = await request.body(), request.path_params["path"]
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "idempotency-key", "content-type")
        }
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.request(request.method, f"{upstream[0]}/{path}", content=body, headers=headers)
        if request.method == "POST" and path == "refunds":
            refund_keys.append(request.headers.get("idempotency-key"))
            if len(refund_keys) == 1:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(release.wait(), 30)
        return Response(answer.content, answer.status_code, media_type="application/json")

    proxy = LocalServer(Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])]))
    async with proxy:
        server = await start_payments_server(database, kafka, SANDBOX_URL=proxy.url)
        upstream.append(server.url + "/sandbox/v1")
        try:
            client, _inv, collected = await collecting_by_card(server, currency="USD", total=10000)
            payment = await settled(client, collected.json()["id"])

            r = await client.post(f"/api/payments/{payment['id']}/refund", json={"amount": 3000, "reason": "Timed out"})
            assert r.status_code == 202 and r.json()["status"] == "pending", r.text  # the provider did not answer
            refund_id = r.json()["id"]
            # Meanwhile a second refund may only take what the pending one leaves.
            r = await client.post(f"/api/payments/{payment['id']}/refund", json={"amount": 7001, "reason": "Too much"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "refund_exceeds_payment"

            async def refunded():
                p = (await client.get(f"/api/payments/{payment['id']}")).json()
                return p if p["amountRefunded"] > 0 else None

            after = await eventually(refunded)  # the worker finished it
            assert (after["status"], after["amountRefunded"]) == ("PARTIALLY_REFUNDED", 3000)
            # Called again by the worker, with the same key: one refund at the provider.
            [charge] = await server.fetch(
                "SELECT amount_refunded FROM sandbox_charges WHERE reference = $1", payment["id"]
            )
            assert charge["amount_refunded"] == 3000
            assert len(await server.fetch("SELECT 1 FROM sandbox_refunds")) == 1
            assert len(refund_keys) >= 2 and set(refund_keys) == {f"billstream_{refund_id}"}, refund_keys
            [job] = await server.fetch("SELECT state, attempts FROM refund_jobs WHERE refund_id = $1", refund_id)
            assert job["state"] == "succeeded" and job["attempts"] >= 2
            events = await payment_events(server, at_least=4)
            refunds = {e["id"]: e["data"] for e in events if e["type"] == "payment.refunded"}
            assert [(x["refundId"], x["amount"]) for x in refunds.values()] == [(refund_id, 3000)]
        finally:
            release.set()
            await stop_payments_server(server)
