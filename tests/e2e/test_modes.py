"""Test mode and live mode through the :3000 origin: one tenant, a test key and a live key, two
worlds that do not see each other (shared/auth.py). Every resource says which it lives in."""

import asyncio
import json
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from deploy.local.demo import create_tenant
from shared.auth import world
from tests.conftest import days_from_today, eventually
from tests.e2e.test_invoicing_api import _publish
from tests.support.webhooks_receivers import Receiver

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
# One path of each service these tests use: a key reaches each over billing.tenants.
PATHS = ("/api/invoices", "/api/webhook-endpoints", "/api/dunning/policy")


def create_key(tenant_id: str, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "services.invoicing", "tenants", "create-key", tenant_id, "--mode", mode, "--json"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def client(gateway: str, key: str):
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        deadline = time.monotonic() + 30
        for path in PATHS:
            while c.get(path).status_code == 401:
                assert time.monotonic() < deadline, f"key not active for {path}"
                time.sleep(0.2)
        yield c


@pytest.fixture(scope="module")
def tenant(gateway):
    t = create_tenant(f"Modes {uuid.uuid4().hex[:6]}")  # its first key: a test key
    live = create_key(t["tenantId"], "live")
    assert live["tenantId"] == t["tenantId"] and live["apiKey"].startswith("sk_live_")
    assert t["apiKey"].startswith("sk_test_")
    return {"id": t["tenantId"], "test": t["apiKey"], "live": live["apiKey"]}


@pytest.fixture(scope="module")
def test_api(gateway, tenant):
    yield from client(gateway, tenant["test"])


@pytest.fixture(scope="module")
def live_api(gateway, tenant):
    yield from client(gateway, tenant["live"])


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def customer_and_invoice(api: httpx.Client) -> tuple[dict, dict]:
    customer = ok(api.post("/api/customers", json={"name": "Mode Buyer", "currency": "USD"}), 201)
    invoice = ok(
        api.post(
            "/api/invoices",
            json={
                "customerId": customer["id"],
                "dueDate": days_from_today(30),
                "items": [{"description": "Plan", "quantity": 1, "unitAmount": 1000}],
            },
        ),
        201,
    )
    return customer, invoice


def listed_ids(api: httpx.Client, path: str) -> dict[str, bool]:
    """id → livemode of everything the list shows (a fresh tenant's lists are short)."""
    return {v["id"]: v["livemode"] for v in ok(api.get(path, params={"limit": 100}))["data"]}


@pytest.mark.parametrize(("mode", "other"), [("test", "live"), ("live", "test")])
def test_customers_and_invoices_of_one_mode_do_not_exist_in_the_other(mode, other, test_api, live_api):
    apis = {"test": test_api, "live": live_api}
    mine, theirs = apis[mode], apis[other]
    customer, invoice = customer_and_invoice(mine)
    livemode = mode == "live"
    assert customer["livemode"] is livemode and invoice["livemode"] is livemode
    assert invoice["customer"]["id"] == customer["id"]

    for path in (f"/api/customers/{customer['id']}", f"/api/invoices/{invoice['id']}"):
        assert ok(mine.get(path))["livemode"] is livemode
        r = theirs.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing", r.text
    # Nor can the other mode act on them: an invoice for a customer it does not have, a finalize.
    r = theirs.post(
        "/api/invoices",
        json={
            "customerId": customer["id"],
            "dueDate": days_from_today(30),
            "items": [{"description": "x", "unitAmount": 1}],
        },
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "customer_not_found", r.text
    assert theirs.post(f"/api/invoices/{invoice['id']}/finalize").status_code == 404

    for path, resource in (("/api/customers", customer), ("/api/invoices", invoice)):

        async def in_my_list(path=path, resource=resource):
            return listed_ids(mine, path).get(resource["id"]) is livemode

        asyncio.run(eventually(in_my_list))  # the read model has it: the other's list would by now too
        assert resource["id"] not in listed_ids(theirs, path)
        assert set(listed_ids(theirs, path).values()) <= {not livemode}


def test_a_payment_event_of_the_live_world_leaves_the_test_invoice_alone(tenant, test_api):
    _, invoice = customer_and_invoice(test_api)
    iid = invoice["id"]
    ok(test_api.post(f"/api/invoices/{iid}/finalize"))
    for tenant_id, payment_id, amount in (
        (tenant["id"], "pay_live", 700),
        (world(tenant["id"], "test"), "pay_test", 1),
    ):
        asyncio.run(
            _publish(
                tenant_id,
                "billing.payments",
                "payment.succeeded",
                iid,
                {"paymentId": payment_id, "invoiceId": iid, "amount": amount, "method": "card"},
            )
        )

    async def test_payment_seen():  # events arrive in order on the invoice's partition
        return ok(test_api.get(f"/api/invoices/{iid}"))["amountPaid"] != 0

    asyncio.run(eventually(test_payment_seen))
    assert ok(test_api.get(f"/api/invoices/{iid}"))["amountPaid"] == 1


def test_a_webhook_endpoint_receives_only_the_events_of_its_mode(test_api, live_api):
    with Receiver() as test_receiver, Receiver() as live_receiver:
        endpoints = {}
        for api, receiver, livemode in ((test_api, test_receiver, False), (live_api, live_receiver, True)):
            endpoint = ok(
                api.post("/api/webhook-endpoints", json={"url": receiver.url, "enabledEvents": ["invoice.created"]}),
                201,
            )
            assert endpoint["livemode"] is livemode
            assert ok(api.get(f"/api/webhook-endpoints/{endpoint['id']}"))["livemode"] is livemode
            receiver.secrets.append(endpoint["secret"])
            endpoints[livemode] = endpoint

        def invoices_received(receiver: Receiver) -> dict[str, dict]:
            return {h.payload["data"]["invoice"]["id"]: h.payload for h in receiver.verified_hits()}

        async def got(receiver: Receiver, invoice_id: str):
            return invoices_received(receiver).get(invoice_id)

        # The live invoice first: once the live endpoint has it, the webhooks service has matched
        # it against every endpoint (one transaction), so a wrong delivery to the test one exists.
        _, live_invoice = customer_and_invoice(live_api)
        live_hook = asyncio.run(eventually(lambda: got(live_receiver, live_invoice["id"]), timeout=30))
        _, test_invoice = customer_and_invoice(test_api)
        test_hook = asyncio.run(eventually(lambda: got(test_receiver, test_invoice["id"]), timeout=30))

        assert live_hook["livemode"] is True and live_hook["data"]["invoice"]["livemode"] is True
        assert test_hook["livemode"] is False and test_hook["data"]["invoice"]["livemode"] is False
        assert live_invoice["id"] not in invoices_received(test_receiver)
        assert test_invoice["id"] not in invoices_received(live_receiver)
        test_deliveries = ok(test_api.get(f"/api/webhook-endpoints/{endpoints[False]['id']}/deliveries"))["data"]
        assert [d["eventId"] for d in test_deliveries] == [test_hook["id"]]
        assert test_deliveries[0]["livemode"] is False
        # Neither mode sees the other's endpoint.
        assert live_api.get(f"/api/webhook-endpoints/{endpoints[False]['id']}").status_code == 404
        assert test_api.get(f"/api/webhook-endpoints/{endpoints[True]['id']}").status_code == 404
        for api, endpoint in ((test_api, endpoints[False]), (live_api, endpoints[True])):
            assert api.delete(f"/api/webhook-endpoints/{endpoint['id']}").status_code == 204


def test_dunning_policy_says_its_mode(test_api, live_api):
    assert ok(test_api.get("/api/dunning/policy"))["livemode"] is False
    assert ok(live_api.get("/api/dunning/policy"))["livemode"] is True


def test_test_clocks_are_for_test_keys_only(test_api, live_api):
    for r in (live_api.post("/api/test-clocks", json={"name": "nope"}), live_api.get("/api/test-clocks")):
        assert r.status_code == 403 and r.json()["error"]["code"] == "test_mode_only", r.text
    clock = ok(test_api.post("/api/test-clocks", json={"name": "demo"}), 201)
    try:
        assert clock["object"] == "test_clock" and clock["livemode"] is False
        assert live_api.get(f"/api/test-clocks/{clock['id']}").status_code == 403
        assert [c["id"] for c in ok(test_api.get("/api/test-clocks"))["data"]] == [clock["id"]]
    finally:
        assert ok(test_api.delete(f"/api/test-clocks/{clock['id']}"))["deleted"] is True
