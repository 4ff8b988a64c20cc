"""The tenant over HTTP through :3000: profile, usage, and key rotation without a shell."""

import json
import subprocess
import sys
import time

import httpx

from tests.e2e.conftest import PatientTransport, ok, tenant_client


def _until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def test_profile_rename_and_usage(gateway):
    with tenant_client(gateway, "Usage Ltd") as api:
        me = ok(api.get("/api/tenants/me"))
        assert me["object"] == "tenant" and me["livemode"] is False and me["name"].startswith("Usage Ltd")
        renamed = ok(api.patch("/api/tenants/me", json={"name": "Usage & Sons"}))
        assert renamed["name"] == "Usage & Sons" and renamed["id"] == me["id"]
        assert ok(api.get("/api/tenants/me"))["name"] == "Usage & Sons"
        assert api.patch("/api/tenants/me", json={"name": ""}).status_code == 400
        assert api.patch("/api/tenants/me", json={"plan": "gold"}).status_code == 400

        customer = ok(api.post("/api/customers", json={"name": "Nakato", "email": "n@example.com"}), 201)
        for amount in (1000, 2500):
            inv = ok(
                api.post(
                    "/api/invoices",
                    json={
                        "customerId": customer["id"],
                        "currency": "UGX",
                        "items": [{"description": "Plan", "quantity": 1, "unitAmount": amount}],
                    },
                ),
                201,
            )
        ok(api.post(f"/api/invoices/{inv['id']}/finalize"))
        usage = ok(api.get("/api/tenants/me/usage"))
        assert usage["invoices"] == {"total": 2, "createdThisPeriod": 2} and usage["customers"] == {"total": 1}
        assert usage["amounts"] == [{"currency": "UGX", "invoiced": 2500, "paid": 0}]  # the draft does not count
        assert usage["apiKeys"] == {"active": 1} and usage["period"]["start"].endswith("-01T00:00:00Z")


def test_keys_rotate_over_http_within_their_mode(gateway):
    with tenant_client(gateway, "Rotating Ltd") as api:
        [first] = ok(api.get("/api/tenants/me/api-keys"))["data"]
        assert first["mode"] == "test" and first["active"] and "secret" not in first
        r = api.delete(f"/api/tenants/me/api-keys/{first['id']}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "last_api_key"

        made = ok(api.post("/api/tenants/me/api-keys", json={}), 201)
        assert made["secret"].startswith("sk_test_") and made["prefix"] == made["secret"][:12]
        listed = ok(api.get("/api/tenants/me/api-keys"))
        assert [k["id"] for k in listed["data"]] == [made["id"], first["id"]] and "secret" not in str(listed)
        assert listed["meta"]["total"] == 2

        # A live key, made with the CLI: a test key neither lists nor revokes it.
        tenant_id = ok(api.get("/api/tenants/me"))["id"]
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.invoicing",
                "tenants",
                "create-key",
                tenant_id,
                "--mode",
                "live",
                "--json",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        live = json.loads(out.stdout)
        assert live["keyId"] not in {k["id"] for k in ok(api.get("/api/tenants/me/api-keys"))["data"]}
        assert api.delete(f"/api/tenants/me/api-keys/{live['keyId']}").status_code == 404
        with httpx.Client(
            base_url=gateway, headers={"Authorization": f"Bearer {live['apiKey']}"}, timeout=30
        ) as live_api:
            _until(lambda: live_api.get("/api/tenants/me").status_code == 200)
            assert [k["mode"] for k in ok(live_api.get("/api/tenants/me/api-keys"))["data"]] == ["live"]
            assert ok(live_api.get("/api/tenants/me"))["livemode"] is True

        with httpx.Client(
            base_url=gateway,
            headers={"Authorization": f"Bearer {made['secret']}"},
            timeout=30,
            transport=PatientTransport(),
        ) as new:
            assert ok(new.get("/api/tenants/me"))["id"] == ok(api.get("/api/tenants/me"))["id"]  # at once, here
            _until(lambda: new.get("/api/payments").status_code == 200)  # and soon in every service
            revoked = ok(new.delete(f"/api/tenants/me/api-keys/{first['id']}"))
            assert revoked["active"] is False and revoked["revokedAt"]
            assert api.get("/api/tenants/me").status_code == 401  # refused here at once
            _until(lambda: api.get("/api/payments").status_code == 401)  # and soon everywhere
            assert new.delete("/api/tenants/me/api-keys/key_unknown").status_code == 404
            ok(new.get("/api/invoices"))
