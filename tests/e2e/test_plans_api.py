"""Plans through :3000 (NovaBilling's /api/plans): a unique code, NovaBilling's billingInterval
or interval and intervalCount, one price per currency, versioned when its amount changes, and
every refusal a clear 4xx."""

import uuid

import pytest

from tests.e2e.conftest import ok, tenant_client


@pytest.fixture(scope="module")
def api(gateway):
    with tenant_client(gateway, "Plans") as client:
        yield client


def code() -> str:
    return f"premium_{uuid.uuid4().hex[:8]}"


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["code"]


def test_a_plan_is_created_with_prices_and_listed_at_once(api):
    body = {
        "code": code(),
        "name": "Premium Monthly",
        "description": "Everything",
        "billingInterval": "MONTHLY",
        "features": ["Unlimited users", "Priority support"],
        "trialDays": 14,
        "prices": [{"currency": "NGN", "amount": 999999}, {"currency": "usd", "amount": 1500}],
    }
    plan = ok(api.post("/api/plans", json=body), 201)
    assert plan["id"].startswith("plan_") and plan["object"] == "plan" and plan["livemode"] is False
    assert (plan["interval"], plan["intervalCount"], plan["billingInterval"]) == ("month", 1, "MONTHLY")
    assert (plan["trialDays"], plan["isActive"], plan["features"]) == (14, True, body["features"])
    assert {(p["currency"], p["amount"], p["version"]) for p in plan["prices"]} == {
        ("NGN", 999999, 1),
        ("USD", 1500, 1),
    }
    assert ok(api.get(f"/api/plans/{plan['id']}")) == plan
    listed = ok(api.get("/api/plans", params={"code": body["code"]}))
    assert listed["data"] == [plan] and listed["meta"]["total"] == 1
    assert error_of(api.post("/api/plans", json={**body, "prices": []}), 409) == "plan_code_taken"


def test_prices_are_added_changed_in_versions_and_removed(api):
    plan = ok(
        api.post("/api/plans", json={"code": code(), "name": "Weekly", "interval": "week", "intervalCount": 2}), 201
    )
    assert (plan["billingInterval"], plan["prices"]) == (None, [])
    price = ok(api.post(f"/api/plans/{plan['id']}/prices", json={"currency": "KES", "amount": 50000}), 201)
    assert (price["object"], price["planId"], price["amount"], price["version"]) == ("plan_price", plan["id"], 50000, 1)
    assert error_of(api.post(f"/api/plans/{plan['id']}/prices", json={"currency": "KES", "amount": 1}), 409) == (
        "price_exists"
    )
    changed = ok(api.patch(f"/api/plans/{plan['id']}/prices/{price['id']}", json={"amount": 60000}))
    assert (changed["id"], changed["amount"], changed["version"]) == (price["id"], 60000, 2)
    assert [p["amount"] for p in ok(api.get(f"/api/plans/{plan['id']}"))["prices"]] == [60000]
    assert api.delete(f"/api/plans/{plan['id']}/prices/{price['id']}").status_code == 204
    assert ok(api.get(f"/api/plans/{plan['id']}"))["prices"] == []
    assert error_of(api.patch(f"/api/plans/{plan['id']}/prices/{price['id']}", json={"amount": 1}), 404) == (
        "resource_missing"
    )


def test_a_plan_changes_but_not_its_code_and_goes_when_deleted(api):
    plan = ok(api.post("/api/plans", json={"code": code(), "name": "Yearly", "billingInterval": "YEARLY"}), 201)
    renamed = ok(api.patch(f"/api/plans/{plan['id']}", json={"name": "Yearly Pro", "isActive": False}))
    assert (renamed["name"], renamed["isActive"], renamed["interval"]) == ("Yearly Pro", False, "year")
    assert ok(api.get("/api/plans", params={"isActive": "false", "code": plan["code"]}))["data"] == [renamed]
    assert ok(api.get("/api/plans", params={"isActive": "true", "code": plan["code"]}))["data"] == []
    assert error_of(api.patch(f"/api/plans/{plan['id']}", json={"code": "other"}), 400) == "code_immutable"
    assert api.delete(f"/api/plans/{plan['id']}").status_code == 204
    assert error_of(api.get(f"/api/plans/{plan['id']}"), 404) == "resource_missing"
    assert ok(api.get("/api/plans", params={"code": plan["code"]}))["data"] == []
    # The code is free again.
    ok(api.post("/api/plans", json={"code": plan["code"], "name": "Yearly again", "billingInterval": "YEARLY"}), 201)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "No code"}, 400, "code"),
        ({"code": "Bad Code", "name": "x"}, 400, "code"),
        ({"code": "ok_code", "name": "x", "interval": "fortnight"}, 400, "interval"),
        ({"code": "ok_code", "name": "x", "interval": "month", "intervalCount": 13}, 400, "intervalCount"),
        ({"code": "ok_code", "name": "x", "billingInterval": "YEARLY", "interval": "month"}, 400, "billingInterval"),
        ({"code": "ok_code", "name": "x", "prices": [{"currency": "ZZZ", "amount": 1}]}, 400, "currency"),
        ({"code": "ok_code", "name": "x", "prices": [{"currency": "USD", "amount": -1}]}, 400, "prices.0.amount"),
        ({"code": "ok_code", "name": "x", "trialDays": 10000}, 400, "trialDays"),
    ],
)
def test_bad_plans_are_refused_naming_the_field(api, body, status, field):
    r = api.post("/api/plans", json=body)
    assert r.status_code == status and r.json()["error"]["field"] == field, r.text
