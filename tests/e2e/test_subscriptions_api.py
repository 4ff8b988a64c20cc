"""Subscriptions through :3000 (NovaBilling's /api/subscriptions): the first period billed at
once on an invoice naming the subscription, lists by status, customer and plan, a plan change now
with proration or at the period's end, pause and resume, both kinds of cancel, and clear 4xx."""

import uuid

import pytest

from tests.e2e.conftest import ok, tenant_client


@pytest.fixture(scope="module")
def api(gateway):
    with tenant_client(gateway, "Subscriptions") as client:
        yield client


def plan(api, amount: int, **kw) -> dict:
    body = {"code": f"p_{uuid.uuid4().hex[:8]}", "name": f"Plan {amount}", "billingInterval": "MONTHLY", **kw}
    return ok(api.post("/api/plans", json={**body, "prices": [{"currency": "USD", "amount": amount}]}), 201)


def customer(api) -> dict:
    return ok(
        api.post("/api/customers", json={"name": "Subscriber", "email": f"s.{uuid.uuid4().hex[:8]}@example.com"}), 201
    )


def subscribe(api, cust: dict, pl: dict, **kw):
    return api.post("/api/subscriptions", json={"customerId": cust["id"], "planId": pl["id"], "currency": "USD", **kw})


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["code"]


def test_a_subscription_bills_its_first_period_at_once_and_is_listed(api):
    cust, basic = customer(api), plan(api, 1000)
    sub = ok(subscribe(api, cust, basic, quantity=3, metadata={"seat": "team"}), 201)
    assert (sub["status"], sub["currentPeriod"], sub["amount"], sub["metadata"]) == (
        "ACTIVE",
        1,
        3000,
        {"seat": "team"},
    )
    [invoice] = ok(api.get("/api/invoices", params={"subscriptionId": sub["id"]}))["data"]
    assert (invoice["id"], invoice["total"], invoice["status"]) == (sub["latestInvoiceId"], 3000, "PENDING")
    assert invoice["subscriptionId"] == sub["id"] and invoice["items"][0]["quantity"] == 3
    assert ok(api.get(f"/api/subscriptions/{sub['id']}")) == sub
    for params in ({"customerId": cust["id"]}, {"planId": basic["id"], "status": "ACTIVE"}):
        assert [s["id"] for s in ok(api.get("/api/subscriptions", params=params))["data"]] == [sub["id"]], params
    assert [s["id"] for s in ok(api.get(f"/api/customers/{cust['id']}/subscriptions"))["data"]] == [sub["id"]]
    # A plan with a running subscription is deactivated, not deleted.
    assert error_of(api.delete(f"/api/plans/{basic['id']}"), 409) == "plan_has_subscriptions"


def test_a_trial_bills_nothing_until_it_ends(api):
    cust = customer(api)
    sub = ok(subscribe(api, cust, plan(api, 1000, trialDays=14)), 201)
    assert (sub["status"], sub["currentPeriod"], sub["latestInvoiceId"]) == ("TRIALING", 0, None)
    assert sub["trialEnd"] == sub["currentPeriodEnd"]
    assert ok(api.get("/api/invoices", params={"subscriptionId": sub["id"]}))["data"] == []


def test_a_plan_change_now_credits_the_old_plan_and_bills_the_new_for_the_rest_of_the_period(api):
    cust, basic, pro = customer(api), plan(api, 1000), plan(api, 3000)
    sub = ok(subscribe(api, cust, basic), 201)
    changed = ok(api.post(f"/api/subscriptions/{sub['id']}/change-plan", json={"newPlanId": pro["id"]}))
    assert (changed["planId"], changed["unitAmount"]) == (pro["id"], 3000)
    bills = ok(api.get("/api/invoices", params={"subscriptionId": sub["id"], "sort": "createdAt"}))["data"]
    assert len(bills) == 2 and bills[1]["id"] == changed["latestInvoiceId"]
    # Changed on the first day: the rest of the period is (nearly) all of it, less the old plan's share.
    assert bills[1]["total"] >= 2900 and bills[1]["creditsApplied"] >= 950
    assert bills[1]["amountDue"] == bills[1]["total"] - bills[1]["creditsApplied"]
    later = ok(
        api.post(f"/api/subscriptions/{sub['id']}/change-plan", json={"newPlanId": basic["id"], "at": "period_end"})
    )
    assert (later["planId"], later["pendingPlanId"]) == (pro["id"], basic["id"])


def test_pause_resume_and_cancel(api):
    cust, basic = customer(api), plan(api, 1000)
    sub = ok(subscribe(api, cust, basic), 201)
    paused = ok(api.post(f"/api/subscriptions/{sub['id']}/pause"))
    assert paused["status"] == "PAUSED" and error_of(api.post(f"/api/subscriptions/{sub['id']}/pause"), 409) == (
        "subscription_paused"
    )
    resumed = ok(api.post(f"/api/subscriptions/{sub['id']}/resume"))
    assert (resumed["status"], resumed["currentPeriod"]) == ("ACTIVE", 2)
    assert resumed["latestInvoiceId"] != sub["latestInvoiceId"]
    assert error_of(api.delete(f"/api/customers/{cust['id']}"), 409) == "customer_has_subscriptions"
    at_end = ok(api.post(f"/api/subscriptions/{sub['id']}/cancel", json={"cancelAt": "period_end"}))
    assert (at_end["status"], at_end["cancelAtPeriodEnd"]) == ("ACTIVE", True)
    now = ok(api.post(f"/api/subscriptions/{sub['id']}/cancel", json={"cancelAt": "now", "reason": "closed"}))
    assert now["status"] == "CANCELED" and now["canceledAt"]
    assert error_of(api.post(f"/api/subscriptions/{sub['id']}/cancel", json={}), 409) == "subscription_canceled"
    assert [
        s["id"]
        for s in ok(api.get("/api/subscriptions", params={"customerId": cust["id"], "status": "CANCELED"}))["data"]
    ] == [sub["id"]]


def test_bad_subscriptions_are_refused_naming_the_field(api):
    cust, basic = customer(api), plan(api, 1000)
    inactive = plan(api, 500)
    ok(api.patch(f"/api/plans/{inactive['id']}", json={"isActive": False}))
    cases = [
        (subscribe(api, cust, basic, currency="EUR"), "price_not_found", "currency"),
        (subscribe(api, cust, inactive), "plan_inactive", "planId"),
        (subscribe(api, cust, {"id": "plan_nothing"}), "plan_not_found", "planId"),
        (subscribe(api, {"id": "cust_nothing"}, basic), "customer_not_found", "customerId"),
        (subscribe(api, cust, basic, startDate="2099-01-01"), "start_date_invalid", "startDate"),
        (subscribe(api, cust, basic, quantity=0), "parameter_invalid", "quantity"),
    ]
    for response, code, field in cases:
        assert response.status_code == 400, response.text
        assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (code, field)
    assert error_of(api.get("/api/subscriptions", params={"status": "RUNNING"}), 400) == "parameter_invalid"
    assert error_of(api.get("/api/subscriptions/sub_nothing"), 404) == "resource_missing"
    assert ok(api.get("/api/subscriptions", params={"customerId": cust["id"]}))["data"] == []
