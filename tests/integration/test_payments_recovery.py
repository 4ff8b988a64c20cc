"""Payments when the provider says no to a refund, and when the process dies after the provider
took a charge but before payments recorded it: a real payments process, its own database and
topics, the sandbox provider (behind a small proxy where a test needs the provider to refuse)."""

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import eventually
from tests.integration.test_payments_flows import collecting_by_card, payment_events, settled
from tests.support.payments_fakes import LocalServer
from tests.support.payments_server import start_payments_server, stop_payments_server


def refusing_proxy(upstream: list[str], refusals: list[str], refuse_first: int):
    """The sandbox, except that the first `refuse_first` refund calls get the 400 a provider sends
    when it will not refund (a disputed charge); every refused call's key is kept in `refusals`."""

    async def forward(request):
        body, path = await request.body(), request.path_params["path"]
        if request.method == "POST" and path == "refunds" and len(refusals) < refuse_first:
            refusals.append(request.headers.get("idempotency-key"))
            return JSONResponse(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "charge_disputed",
                        "message": "The charge is disputed and cannot be refunded.",
                    }
                },
                400,
            )
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "idempotency-key", "content-type")
        }
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.request(request.method, f"{upstream[0]}/{path}", content=body, headers=headers)
        return Response(answer.content, answer.status_code, media_type="application/json")

    return LocalServer(Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])]))


async def test_a_refund_the_provider_refuses_is_recorded_visibly_and_refunds_nothing(database, kafka):
    upstream: list[str] = []
    refusals: list[str] = []
    async with refusing_proxy(upstream, refusals, refuse_first=1) as proxy:
        server = await start_payments_server(database, kafka, SANDBOX_URL=proxy.url)
        upstream.append(server.url + "/sandbox/v1")
        try:
            client, _inv, collected = await collecting_by_card(server, currency="USD", total=10000)
            payment = await settled(client, collected.json()["id"])
            assert payment["status"] == "SUCCEEDED"

            r = await client.post(f"/api/payments/{payment['id']}/refund", json={"amount": 4000, "reason": "Disputed"})
            # The caller hears the refusal, with the provider's reason.
            assert r.status_code == 402, r.text
            error = r.json()["error"]
            assert error["code"] == "charge_disputed" and "disputed" in error["message"]
            # Recorded: the job says refused and why, and it is never sent again.
            [job] = await server.fetch("SELECT refund_id, state, last_error, amount FROM refund_jobs")
            assert (job["state"], job["amount"]) == ("refused", 4000) and "disputed" in job["last_error"]
            assert refusals == [f"billstream_{job['refund_id']}"]
            # Nothing refunded: not at the provider, not on the payment.
            [charge] = await server.fetch(
                "SELECT amount_refunded FROM sandbox_charges WHERE reference = $1", payment["id"]
            )
            assert charge["amount_refunded"] == 0
            after = (await client.get(f"/api/payments/{payment['id']}")).json()
            assert (after["status"], after["amountRefunded"]) == ("SUCCEEDED", 0)

            # The refused amount is not held back: the whole payment can still be refunded (the
            # provider agrees this time), and only that refund is published.
            r = await client.post(f"/api/payments/{payment['id']}/refund", json={"amount": 10000, "reason": "Resolved"})
            assert r.status_code == 201, r.text
            ok_refund = r.json()["id"]
            events = await payment_events(server, at_least=4)
            refunds = {e["id"]: e["data"] for e in events if e["type"] == "payment.refunded"}
            assert [(x["refundId"], x["amount"]) for x in refunds.values()] == [(ok_refund, 10000)]
            # The refused job stayed refused (the worker did not repeat it behind our back).
            [job] = await server.fetch("SELECT state FROM refund_jobs WHERE refund_id = $1", job["refund_id"])
            assert job["state"] == "refused" and len(refusals) == 1
        finally:
            await stop_payments_server(server)


async def test_killed_after_the_provider_took_the_charge_records_it_once_and_never_charges_twice(database, kafka):
    """The failpoint `payments.after_charge` kills payments (as kill -9 would) after the sandbox
    answered the charge and before anything about it is recorded. Its settlement is slow (15 s),
    so the restarted worker finds the job unrecorded when the lease runs out and must send it again:
    with the same idempotency key the provider hands back the same charge."""
    # The charge lease is 3 × the provider timeout + 5 s = 8 s here, well before the 15 s settlement.
    crashing = await start_payments_server(
        database, kafka, failpoints="payments.after_charge", PROVIDER_TIMEOUT_S="1", SANDBOX_DELAY_S="15"
    )
    try:
        client, _inv, _ = await collecting_by_card(crashing)
        assert await crashing.proc.wait() == 137
        [job] = await crashing.fetch("SELECT payment_id, done, provider_reference FROM charge_jobs")
        [taken] = await crashing.fetch("SELECT charge_id FROM sandbox_charges")  # the provider took it...
        assert not job["done"] and job["provider_reference"] is None  # ...and payments recorded nothing
    finally:
        await stop_payments_server(crashing)

    # Same URL as before (a real restart keeps it): the sandbox's callbacks and the charge request,
    # whose body carries the callback URL, must match the first attempt's.
    restarted = await start_payments_server(
        database, kafka, run=crashing.run, port=httpx.URL(crashing.url).port, PROVIDER_TIMEOUT_S="1"
    )
    try:
        client = httpx.AsyncClient(base_url=restarted.url, headers=dict(client.headers))

        async def sent_again():  # the worker took the job up again after the lease ran out
            rows = await restarted.fetch("SELECT attempts, provider_reference FROM charge_jobs")
            return rows[0]["provider_reference"] is not None and rows[0]["attempts"] >= 2

        await eventually(sent_again, timeout=60)
        payment = await settled(client, job["payment_id"], timeout=60)
        assert payment["status"] == "SUCCEEDED" and payment["amount"] == 180000
        charges = await restarted.fetch("SELECT charge_id FROM sandbox_charges")
        assert [c["charge_id"] for c in charges] == [taken["charge_id"]]  # charged once
        [job] = await restarted.fetch("SELECT provider_reference FROM charge_jobs")
        assert job["provider_reference"] == taken["charge_id"]
        events = await payment_events(restarted, at_least=3)
        unique = {e["id"]: e["type"] for e in events if e["subject"] == payment["id"]}
        assert sorted(unique.values()) == ["payment.created", "payment.processing", "payment.succeeded"]
    finally:
        await stop_payments_server(restarted)
