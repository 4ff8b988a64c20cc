"""Flutterwave and M-Pesa (Daraja's STK push) over real HTTP against local servers that speak
those APIs, and both wired through a running payments process: provider accounts managed over
the API (read, change, deactivate, delete, test the credentials), charges, callbacks that are
verified and then confirmed with the provider, refunds."""

import json

import httpx
import pytest

from services.payments.providers.base import Instrument, ProviderError, SignatureInvalid
from services.payments.providers.flutterwave import FlutterwaveProvider
from services.payments.providers.mpesa import MpesaProvider, callback_token, msisdn
from shared.pages import encode_cursor
from tests.conftest import eventually
from tests.support.payments_fakes import (
    FakeDaraja,
    FakeFlutterwave,
    LocalServer,
    charge_request,
    flutterwave_signature,
)
from tests.support.payments_server import invoice, payments_server, start_payments_server, stop_payments_server  # noqa: F401

SECRET_HASH = "flw_secret_hash_test"


def charge(reference: str, token: str | None = None, *, amount: int = 50000, currency: str = "UGX", **more):
    return charge_request(reference, token, amount, currency, **more)


async def test_flutterwave_adapter_charges_once_per_reference_refunds_once_per_key_and_checks_signatures():
    fake = FakeFlutterwave()
    async with LocalServer(fake.app) as server:
        flw = FlutterwaveProvider(fake.secret_key, SECRET_HASH, api_base=f"{server.url}/v3", timeout=3.0)
        await flw.check_credentials()
        with pytest.raises(ProviderError):
            await FlutterwaveProvider("FLWSECK_wrong", SECRET_HASH, api_base=f"{server.url}/v3").check_credentials()

        paid = await flw.charge_saved_method(charge("pay_1", "flw-t-ok"))
        assert (paid.status, paid.provider_reference) == ("succeeded", "pay_1")
        assert fake.transactions["pay_1"]["amount"] == 50000.0  # UGX has no minor unit
        again = await flw.charge_saved_method(charge("pay_1", "flw-t-ok"))  # a retry after a lost answer
        assert again.status == "succeeded" and len(fake.transactions) == 1
        cents = await flw.charge_saved_method(charge("pay_usd", "flw-t-ok", amount=1250, currency="USD"))
        assert cents.status == "succeeded" and fake.transactions["pay_usd"]["amount"] == 12.5
        declined = await flw.charge_saved_method(charge("pay_2", "flw-t-nofunds"))
        assert (declined.status, declined.failure_reason) == ("failed", "Insufficient funds")

        hosted = await flw.start_payment(charge("pay_3", return_url="http://shop/back"))
        assert hosted.status == "requires_action" and hosted.redirect_url.endswith("/pay/pay_3")
        assert (await flw.get_status("pay_3")).status == "requires_action"  # nobody paid the link yet
        fake.pay("pay_3")
        assert (await flw.get_status("pay_3")).status == "succeeded"

        # Three refunds of one charge; the third's retry finds it on the second page of /refunds.
        first = await flw.refund("rf_a", "pay_1", 10000, "UGX")
        await flw.refund("rf_b", "pay_1", 10000, "UGX")
        third = await flw.refund("rf_c", "pay_1", 5000, "UGX")
        assert (await flw.refund("rf_c", "pay_1", 5000, "UGX")).provider_reference == third.provider_reference
        assert (await flw.refund("rf_a", "pay_1", 10000, "UGX")).provider_reference == first.provider_reference
        assert len(fake.refunds) == 3 and fake.transactions["pay_1"]["refunded"] == 25000.0
        with pytest.raises(ProviderError):
            await flw.refund("rf_d", "pay_1", 30000, "UGX")  # more than is left

        body = json.dumps(
            {"event": "charge.completed", "data": {"id": 5000, "tx_ref": "pay_1", "status": "successful"}}
        ).encode()
        event = flw.verify_callback({"flutterwave-signature": flutterwave_signature(SECRET_HASH, body)}, body)
        assert (event.payment_id, event.status, event.confirm) == ("pay_1", "succeeded", True)
        assert flw.verify_callback({"verif-hash": SECRET_HASH}, body).event_id == event.event_id
        for forged in (
            {"flutterwave-signature": flutterwave_signature("other", body)},
            {"verif-hash": "other"},
            {},
        ):
            with pytest.raises(SignatureInvalid):
                flw.verify_callback(forged, body)
        with pytest.raises(SignatureInvalid):
            FlutterwaveProvider(fake.secret_key, None).verify_callback({"verif-hash": ""}, body)
        with pytest.raises(SignatureInvalid):  # not a crash on characters HMAC digests never have
            flw.verify_callback({"flutterwave-signature": "é"}, body)
        assert (await flw.get_status("pay_usd")).charged == (1250, "USD")


async def test_mpesa_adapter_pushes_once_confirms_by_query_and_refuses_what_daraja_cannot_do():
    assert msisdn("0712 345 678") == msisdn("+254712345678") == msisdn("712345678") == "254712345678"
    with pytest.raises(ProviderError):
        msisdn("12345")
    fake = FakeDaraja()
    async with LocalServer(fake.app) as server:
        mpesa = MpesaProvider(fake.credentials, api_base=server.url, timeout=3.0)
        await mpesa.check_credentials()
        with pytest.raises(ProviderError, match="Invalid Authentication"):
            await MpesaProvider(
                {**fake.credentials, "consumerSecret": "wrong"}, api_base=server.url
            ).check_credentials()

        phone = Instrument("mobile_money", "0712345678")
        pushed = await mpesa.start_payment(charge("pay_1", amount=150000, currency="KES", instrument=phone))
        assert pushed.status == "processing" and pushed.provider_reference in fake.pushes
        push = fake.pushes[pushed.provider_reference]
        assert (push["Amount"], push["PhoneNumber"], push["PartyB"]) == (1500, "254712345678", fake.shortcode)
        assert f"token={callback_token(fake.consumer_secret, 'pay_1')}" in push["CallBackURL"]
        assert (
            await mpesa.get_status(pushed.provider_reference)
        ).status == "processing"  # the customer has not answered
        fake.pushes[pushed.provider_reference]["result"] = 4999  # Daraja: still under processing
        assert (await mpesa.get_status(pushed.provider_reference)).status == "processing"
        fake.pushes[pushed.provider_reference]["result"] = 1032
        cancelled = await mpesa.get_status(pushed.provider_reference)
        assert (cancelled.status, cancelled.failure_code) == ("failed", "mpesa_1032")

        with pytest.raises(ProviderError, match="whole shillings"):
            await mpesa.charge_saved_method(charge("pay_2", "254712345678", amount=150050, currency="KES"))
        with pytest.raises(ProviderError, match="KES only"):
            await mpesa.charge_saved_method(charge("pay_2", "254712345678", amount=1000, currency="UGX"))
        with pytest.raises(ProviderError, match="phone"):
            await mpesa.start_payment(charge("pay_2", amount=1000, currency="KES"))
        pushes = len(fake.pushes)
        # The answer is lost after the prompt went out: processing, and never a second prompt.
        lost = await mpesa.charge_saved_method(charge("pay_slow", "254700000009", amount=1000, currency="KES"))
        assert (lost.status, lost.provider_reference) == ("processing", "") and len(fake.pushes) == pushes + 1
        with pytest.raises(ProviderError, match="reversal"):
            await mpesa.refund("rf_1", pushed.provider_reference, 1000, "KES")

        body = fake.callback_body(pushed.provider_reference, 0, 1500)
        good = {"payment": "pay_1", "token": callback_token(fake.consumer_secret, "pay_1")}
        event = mpesa.verify_callback({}, body, good)
        assert (event.payment_id, event.provider_reference, event.status, event.confirm) == (
            "pay_1",
            pushed.provider_reference,
            "succeeded",
            True,
        )
        for forged in ({**good, "token": "0" * 64}, {**good, "payment": "pay_other"}, {**good, "token": "é"}, {}):
            with pytest.raises(SignatureInvalid):
                mpesa.verify_callback({}, body, forged)


async def _finalized(server, tenant: str, inv: dict) -> None:
    await server.publish_invoice(tenant, "invoice.finalized", inv)
    await eventually(lambda: server.fetch("SELECT 1 FROM payable_invoices WHERE invoice_id = $1", inv["id"]))


async def test_accounts_over_the_api_and_mobile_money_through_the_service(database, kafka):
    flw_fake, daraja = FakeFlutterwave(), FakeDaraja()
    async with LocalServer(flw_fake.app) as flw_server, LocalServer(daraja.app) as daraja_server:
        server = await start_payments_server(
            database, kafka, FLUTTERWAVE_API_BASE=f"{flw_server.url}/v3", MPESA_API_BASE=daraja_server.url
        )
        try:
            tenant, client = await server.tenant("Kampala & Nairobi Ltd")
            r = await client.post(
                "/api/payment-providers", json={"provider": "mpesa", "credentials": {"consumerKey": "x"}}
            )
            assert r.status_code == 400 and r.json()["error"]["field"] == "credentials.consumerSecret"
            flw = (
                await client.post(
                    "/api/payment-providers",
                    json={
                        "provider": "flutterwave",
                        "currencies": ["UGX"],
                        "credentials": {"secretKey": "FLWSECK_wrong", "webhookSecret": SECRET_HASH},
                    },
                )
            ).json()
            mpesa = (
                await client.post(
                    "/api/payment-providers",
                    json={"provider": "mpesa", "currencies": ["KES"], "credentials": daraja.credentials},
                )
            ).json()
            assert flw["isActive"] and mpesa["credentials"] == "encrypted"

            # The test endpoint asks the provider; a wrong key is reported, then replaced.
            tested = (await client.post(f"/api/payment-providers/{flw['id']}/test")).json()
            assert tested["ok"] is False and tested["error"]["code"] == "provider_error"
            r = await client.patch(
                f"/api/payment-providers/{flw['id']}",
                json={"credentials": {"secretKey": flw_fake.secret_key, "webhookSecret": SECRET_HASH}, "priority": 5},
            )
            assert r.status_code == 200 and r.json()["priority"] == 5 and r.json()["updatedAt"]
            assert (await client.post(f"/api/payment-providers/{flw['id']}/test")).json()["ok"] is True
            assert (await client.post(f"/api/payment-providers/{mpesa['id']}/test")).json()["ok"] is True
            assert (await client.get(f"/api/payment-providers/{mpesa['id']}")).json()["provider"] == "mpesa"
            for bad, code in (({}, "parameter_missing"), ({"isActive": None}, "parameter_invalid")):
                r = await client.patch(f"/api/payment-providers/{flw['id']}", json=bad)
                assert r.status_code == 400 and r.json()["error"]["code"] == code
            _other, other_client = await server.tenant("Someone Else")
            assert (await other_client.get(f"/api/payment-providers/{flw['id']}")).status_code == 404
            assert (await other_client.delete(f"/api/payment-providers/{flw['id']}")).status_code == 404

            # Flutterwave: a saved card token, collected; its signed callback is confirmed with the API.
            await client.post(
                "/api/payment-methods", json={"customerId": "cust_ug", "provider": "flutterwave", "token": "flw-t-ok"}
            )
            ugx = invoice(customer_id="cust_ug", currency="UGX", total=180000)
            await _finalized(server, tenant, ugx)
            paid = (await client.post(f"/api/invoices/{ugx['id']}/collect")).json()
            assert (paid["status"], paid["provider"]) == ("SUCCEEDED", "flutterwave")
            body = json.dumps(
                {"event": "charge.completed", "data": {"id": 1, "tx_ref": paid["id"], "status": "failed"}}
            ).encode()
            async with httpx.AsyncClient(base_url=server.url) as raw:
                # The body says failed; Flutterwave says successful when asked, and that is what counts.
                r = await raw.post(
                    f"/webhooks/flutterwave/{flw['id']}",
                    content=body,
                    headers={"flutterwave-signature": flutterwave_signature(SECRET_HASH, body)},
                )
                assert r.status_code == 200 and r.json() == {"received": True}
                r = await raw.post(f"/webhooks/flutterwave/{flw['id']}", content=body, headers={"verif-hash": "guess"})
                assert r.status_code == 400 and r.json()["error"]["code"] == "signature_invalid"
            assert (await client.get(f"/api/payments/{paid['id']}")).json()["status"] == "SUCCEEDED"

            # Someone pays the hosted link's tx_ref less than the payment is for: not a success.
            ugx_hosted = invoice(customer_id="cust_ug", currency="UGX", total=90000)
            await _finalized(server, tenant, ugx_hosted)
            link = (await client.post(f"/api/invoices/{ugx_hosted['id']}/checkout")).json()["checkoutUrl"]
            async with httpx.AsyncClient() as browser:
                r = await browser.post(link, data={"amount": "90000"})
            assert r.status_code == 303 and r.headers["location"].startswith("https://checkout.flutterwave.test/")
            tx_ref = r.headers["location"].rsplit("/", 1)[1]
            flw_fake.links[tx_ref]["amount"] = "100"
            flw_fake.pay(tx_ref)
            body = json.dumps(
                {"event": "charge.completed", "data": {"id": 2, "tx_ref": tx_ref, "status": "successful"}}
            ).encode()
            async with httpx.AsyncClient(base_url=server.url) as raw:
                r = await raw.post(
                    f"/webhooks/flutterwave/{flw['id']}",
                    content=body,
                    headers={"flutterwave-signature": flutterwave_signature(SECRET_HASH, body)},
                )
                assert r.status_code == 200
            short = (await client.get(f"/api/payments/{tx_ref}")).json()
            assert (short["status"], short["failureCode"]) == ("FAILED", "amount_mismatch")

            # Deactivated: no new payments route to it (the test-mode sandbox takes UGX instead).
            r = await client.patch(f"/api/payment-providers/{flw['id']}", json={"isActive": False})
            assert r.json()["isActive"] is False
            ugx2 = invoice(customer_id="cust_ug", currency="UGX", total=5000)
            await _finalized(server, tenant, ugx2)
            assert (await client.post(f"/api/invoices/{ugx2['id']}/checkout")).json()["provider"] == "sandbox"
            # Deleted: gone from the API, yet its payment can still be refunded through it.
            assert (await client.delete(f"/api/payment-providers/{flw['id']}")).json()["deleted"] is True
            assert (await client.get(f"/api/payment-providers/{flw['id']}")).status_code == 404
            listed = (await client.get("/api/payment-providers")).json()
            assert [p["id"] for p in listed["data"]] == [mpesa["id"]] and listed["meta"]["total"] == 1
            r = await client.post(f"/api/payments/{paid['id']}/refund", json={"amount": 80000})
            assert r.status_code == 201 and flw_fake.transactions[paid["id"]]["refunded"] == 80000.0

            # M-Pesa on the hosted page: the phone number is typed there, the customer approves on
            # the phone, Daraja calls back and the status is confirmed by query.
            kes = invoice(customer_id="cust_ke", currency="KES", total=250000)
            await _finalized(server, tenant, kes)
            link = (await client.post(f"/api/invoices/{kes['id']}/checkout")).json()["checkoutUrl"]
            async with httpx.AsyncClient() as browser:
                assert "M-Pesa phone number" in (await browser.get(link)).text
                r = await browser.post(
                    link, data={"amount": "2500", "method": "mobile_money", "mobile_number": "0712345678"}
                )
                assert r.status_code == 303 and "/payments/pay_" in r.headers["location"]
            payment_id = r.headers["location"].rsplit("/", 1)[1]
            [checkout_id] = [k for k, p in daraja.pushes.items() if payment_id in p["CallBackURL"]]
            assert (await client.get(f"/api/payments/{payment_id}")).json()["status"] == "PROCESSING"

            # A forged token is refused; a real token with another push's id changes nothing.
            async with httpx.AsyncClient(base_url=server.url) as raw:
                forged_url = f"/webhooks/mpesa/{mpesa['id']}?payment={payment_id}&token={'0' * 64}"
                r = await raw.post(forged_url, content=daraja.callback_body(checkout_id, 0, 2500))
                assert r.status_code == 400 and r.json()["error"]["code"] == "signature_invalid"
                other = f"ws_CO_{'f' * 12}"
                daraja.pushes[other] = {"result": 0, "CallBackURL": ""}
                token = callback_token(daraja.consumer_secret, payment_id)
                r = await raw.post(
                    f"/webhooks/mpesa/{mpesa['id']}?payment={payment_id}&token={token}",
                    content=daraja.callback_body(other, 0, 2500),
                )
                assert r.status_code == 200 and r.json() == {"received": True, "ignored": True}
            assert (await client.get(f"/api/payments/{payment_id}")).json()["status"] == "PROCESSING"
            r = await daraja.answer(checkout_id, 0)
            assert r.status_code == 200 and r.json() == {"received": True}
            settled = (await client.get(f"/api/payments/{payment_id}")).json()
            assert (settled["status"], settled["amount"], settled["provider"]) == ("SUCCEEDED", 250000, "mpesa")

            async def collect_by_phone(customer_id: str, phone: str) -> dict:
                """A saved phone number's KES invoice, collected."""
                await client.post(
                    "/api/payment-methods",
                    json={"customerId": customer_id, "provider": "mpesa", "type": "mobile_money", "token": phone},
                )
                kes = invoice(customer_id=customer_id, currency="KES", total=10000)
                await _finalized(server, tenant, kes)
                return (await client.post(f"/api/invoices/{kes['id']}/collect")).json()

            # A saved phone number, collected: processing until the customer declines on the phone.
            pending = await collect_by_phone("cust_ke", "254712345678")
            assert pending["status"] == "PROCESSING"
            assert (await daraja.answer(pending["providerReference"], 1032)).json() == {"received": True}
            failed = (await client.get(f"/api/payments/{pending['id']}")).json()
            assert (failed["status"], failed["failureCode"]) == ("FAILED", "mpesa_1032")

            # The push's answer is lost after the prompt went out: when the worker runs the job
            # again it only looks, and never prompts the customer a second time.
            lost = await collect_by_phone("cust_slow", "254700000009")
            assert lost["status"] == "PROCESSING"
            [(slow_id, slow_push)] = [
                (k, p) for k, p in daraja.pushes.items() if p.get("PhoneNumber") == "254700000009"
            ]
            attempts = (await server.fetch("SELECT attempts FROM charge_jobs WHERE payment_id = $1", lost["id"]))[0][0]
            await server.fetch("UPDATE charge_jobs SET next_attempt_at = now() WHERE payment_id = $1", lost["id"])

            async def ran_again():
                rows = await server.fetch("SELECT attempts FROM charge_jobs WHERE payment_id = $1", lost["id"])
                return rows[0][0] > attempts

            await eventually(ran_again)
            assert sum(p.get("PhoneNumber") == "254700000009" for p in daraja.pushes.values()) == 1
            # Its callback still settles it: the URL names the payment.
            assert (await daraja.answer(slow_id, 0)).json() == {"received": True}
            assert (await client.get(f"/api/payments/{lost['id']}")).json()["status"] == "SUCCEEDED"
            [job] = await server.fetch("SELECT provider_reference FROM charge_jobs WHERE payment_id = $1", lost["id"])
            assert job["provider_reference"] == slow_id  # learnt from the callback
            assert slow_push["Amount"] == 100

            # Daraja refuses a push (429) and the job waits to retry; the account is deactivated
            # meanwhile: the retry charges nothing and the payment fails, as no new payment starts there.
            daraja.busy = True
            refused = await collect_by_phone("cust_busy", "254711111111")
            assert refused["status"] == "PENDING" and not [
                p for p in daraja.pushes.values() if "254711111111" in str(p)
            ]
            r = await client.patch(f"/api/payment-providers/{mpesa['id']}", json={"isActive": False})
            assert r.json()["isActive"] is False
            daraja.busy = False
            await server.fetch("UPDATE charge_jobs SET next_attempt_at = now() WHERE payment_id = $1", refused["id"])

            async def ended():
                payment = (await client.get(f"/api/payments/{refused['id']}")).json()
                return payment if payment["status"] == "FAILED" else None

            assert (await eventually(ended))["failureCode"] == "provider_inactive"
            assert not [p for p in daraja.pushes.values() if "254711111111" in str(p)]
        finally:
            await stop_payments_server(server)


async def test_every_list_answers_one_shape_and_pages_by_cursor(payments_server):
    _tenant, client = await payments_server.tenant("Paged Ltd")
    for _ in range(5):
        r = await client.post(
            "/api/payment-methods", json={"customerId": "cust_1", "type": "card", "number": "4242424242424242"}
        )
        assert r.status_code == 201
    first = (await client.get("/api/payment-methods", params={"limit": 2})).json()
    assert first["meta"] == {
        "page": 1,
        "limit": 2,
        "total": 5,
        "totalPages": 3,
        "hasMore": True,
        "nextCursor": first["meta"]["nextCursor"],
    }
    seen = [m["id"] for m in first["data"]]
    cursor = first["meta"]["nextCursor"]
    while cursor:
        page = (await client.get("/api/payment-methods", params={"limit": 2, "cursor": cursor})).json()
        assert page["meta"]["page"] is None and page["meta"]["total"] is None
        seen += [m["id"] for m in page["data"]]
        cursor = page["meta"]["nextCursor"]
    assert len(seen) == len(set(seen)) == 5 and seen == sorted(seen, reverse=True)  # newest first, none twice
    by_page = (await client.get("/api/payment-methods", params={"limit": 2, "page": 3})).json()
    assert [m["id"] for m in by_page["data"]] == seen[4:] and by_page["meta"]["hasMore"] is False
    for cursor in ("not-ours", encode_cursor("not a time", "pm_1"), encode_cursor(5, "pm_1")):
        r = await client.get("/api/payment-methods", params={"cursor": cursor})
        assert r.status_code == 400 and r.json()["error"]["code"] == "cursor_invalid", cursor
    for path in ("/api/payments", "/api/payment-providers"):
        listed = (await client.get(path)).json()
        assert set(listed["meta"]) == {"page", "limit", "total", "totalPages", "hasMore", "nextCursor"}, path
