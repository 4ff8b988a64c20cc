"""The invoicing API through the :3000 origin: every endpoint, every refused transition, and
the facts that arrive from payments and dunning over Kafka."""

import asyncio
import io
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from pypdf import PdfReader

from deploy.local.demo import create_tenant, wait_until_key_active
from services.invoicing.api.pdf import signed_url
from services.invoicing.settings import Settings as InvoicingSettings
from shared.auth import world
from shared.envelope import CloudEvent
from tests.conftest import KAFKA, days_from_today, eventually
from tests.support.kafka import produce


@pytest.fixture(scope="module")
def tenant(gateway):
    t = create_tenant(f"Invoicing Tests {uuid.uuid4().hex[:6]}")
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {t['apiKey']}"}, timeout=30) as c:
        wait_until_key_active(c)
    return {**t, "world": world(t["tenantId"], "test")}  # its test key's rows and events carry this id


@pytest.fixture
def api(gateway, tenant):
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {tenant['apiKey']}"}, timeout=30) as c:
        yield c


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    return body


def new_customer(api, **kw) -> dict:
    return ok(
        api.post(
            "/api/customers",
            json={"name": "Jane Buyer", "email": f"jane.{uuid.uuid4().hex[:6]}@example.com", "currency": "UGX", **kw},
        ),
        201,
    )


def new_invoice(api, customer: dict, *amounts: int, **kw) -> dict:
    """A draft due in 30 days unless told otherwise, so the live dunning service never turns it overdue mid-test."""
    items = [{"description": f"Item {i}", "quantity": 1, "unitAmount": a} for i, a in enumerate(amounts or (100000,))]
    body = {"customerId": customer["id"], "items": items, "dueDate": days_from_today(30), **kw}
    return ok(api.post("/api/invoices", json=body), 201)


def test_customers_create_get_update_list_and_search(api):
    c = new_customer(
        api,
        netTermDays=30,
        billingAddress={"line1": "Plot 4", "city": "Kampala", "country": "UG"},
        taxId="UG-123",
        autoCollection=True,
        metadata={"crm": "42"},
    )
    assert c["id"].startswith("cust_") and c["netTermDays"] == 30 and c["creditBalance"] == 0
    assert ok(api.get(f"/api/customers/{c['id']}")) == c
    updated = ok(api.patch(f"/api/customers/{c['id']}", json={"name": "Jane Q. Buyer"}))
    assert updated["name"] == "Jane Q. Buyer" and updated["taxId"] == "UG-123"

    async def listed():
        return ok(api.get("/api/customers", params={"search": "q. buy"}))["data"]

    found = asyncio.run(eventually(listed))
    assert [x["id"] for x in found] == [c["id"]]
    error(api.post("/api/customers", json={"name": "X", "currency": "ZZZ"}), 400, "currency_unsupported")
    error(api.post("/api/customers", json={"email": "x@example.com"}), 400, "parameter_invalid")
    error(api.get("/api/customers/cust_nope"), 404, "resource_missing")


def test_customer_external_id_country_phone_and_novabillings_list_parameters(api):
    ext = f"user_{uuid.uuid4().hex[:8]}"
    c = new_customer(api, externalId=ext, country="ng", phone="+234 801 234 5678", currency="NGN")
    assert (c["externalId"], c["country"], c["phone"]) == (ext, "NG", "+234 801 234 5678")
    err = error(api.post("/api/customers", json={"name": "Twin", "externalId": ext}), 409, "external_id_taken")
    assert err["field"] == "externalId"
    for bad in ({"country": "Nigeria"}, {"phone": "call me"}, {"externalId": ""}):
        assert error(api.post("/api/customers", json={"name": "Bad", **bad}), 400, "parameter_invalid")[
            "field"
        ] == next(iter(bad))
    assert [x["id"] for x in ok(api.get("/api/customers", params={"externalId": ext}))["data"]] == [c["id"]]
    assert [x["id"] for x in ok(api.get("/api/customers", params={"search": ext}))["data"]] == [c["id"]]
    in_ng = ok(api.get("/api/customers", params={"country": "ng", "currency": "ngn", "limit": 100}))["data"]
    assert c["id"] in [x["id"] for x in in_ng] and {(x["country"], x["currency"]) for x in in_ng} == {("NG", "NGN")}
    names = [
        x["name"]
        for x in ok(api.get("/api/customers", params={"sortBy": "name", "sortOrder": "asc", "limit": 100}))["data"]
    ]
    assert names == sorted(names)
    error(api.get("/api/customers", params={"sortBy": "name", "sortOrder": "sideways"}), 400, "parameter_invalid")
    # A new externalId frees the old one for another customer.
    renamed = ok(api.patch(f"/api/customers/{c['id']}", json={"externalId": f"{ext}-b"}))
    assert renamed["externalId"] == f"{ext}-b" and renamed["country"] == "NG"
    assert new_customer(api, externalId=ext)["externalId"] == ext


def test_a_customer_with_drafts_or_unpaid_invoices_cannot_be_deleted_and_one_without_goes(api):
    c = new_customer(api, externalId=f"gone_{uuid.uuid4().hex[:8]}")
    other = new_customer(api)
    draft = new_invoice(api, c, 1000)
    paid = new_invoice(api, c, 2000)
    ok(api.post(f"/api/invoices/{paid['id']}/finalize"))
    ok(api.post(f"/api/invoices/{paid['id']}/mark-paid"))
    new_invoice(api, other, 3000)
    mine = ok(api.get(f"/api/customers/{c['id']}/invoices", params={"sort": "total"}))
    assert [i["id"] for i in mine["data"]] == [draft["id"], paid["id"]] and mine["meta"]["total"] == 2
    assert [i["id"] for i in ok(api.get(f"/api/customers/{c['id']}/invoices", params={"status": "PAID"}))["data"]] == [
        paid["id"]
    ]
    err = error(api.delete(f"/api/customers/{c['id']}"), 409, "customer_has_open_invoices")
    assert "1 draft or unpaid" in err["message"]
    assert api.delete(f"/api/invoices/{draft['id']}").status_code == 204
    assert api.delete(f"/api/customers/{c['id']}").status_code == 204
    error(api.get(f"/api/customers/{c['id']}"), 404, "resource_missing")
    error(api.get(f"/api/customers/{c['id']}/invoices"), 404, "resource_missing")
    error(api.delete(f"/api/customers/{c['id']}"), 404, "resource_missing")
    assert c["id"] not in [x["id"] for x in ok(api.get("/api/customers", params={"limit": 100}))["data"]]
    body = {"customerId": c["id"], "items": [{"description": "x", "unitAmount": 1}]}
    assert error(api.post("/api/invoices", json=body), 400, "customer_not_found")["field"] == "customerId"
    assert new_customer(api, externalId=c["externalId"])["externalId"] == c["externalId"]  # freed
    # The paid invoice stays, with the customer as it was on it.
    assert ok(api.get(f"/api/invoices/{paid['id']}"))["customer"]["id"] == c["id"]


def test_create_draft_with_taxes_and_discounts_and_defaults_from_the_customer(api):
    c = new_customer(api, netTermDays=14, autoCollection=True)  # currency UGX: see new_customer
    inv = ok(
        api.post(
            "/api/invoices",
            json={
                "customerId": c["id"],
                "items": [
                    {"description": "Pro", "quantity": 2, "unitAmount": 180000, "taxRate": 18},
                    {"description": "Setup", "unitAmount": 5000, "discount": {"percent": 10}},
                ],
                "discount": {"amount": 1000},
                "notes": "Thanks",
                "poNumber": "PO-9",
                "metadata": {"k": "v"},
            },
        ),
        201,
    )
    assert (inv["status"], inv["currency"], inv["subtotal"], inv["discountTotal"], inv["taxTotal"], inv["total"]) == (
        "DRAFT",
        "UGX",
        365000,
        1500,
        64622,
        428122,
    )
    # No due date given: the customer's 14 net days from today (either side of a UTC midnight).
    assert inv["allowPartialPayments"] is True and inv["dueDate"] in (days_from_today(14), days_from_today(15))
    assert inv["customer"] == {"id": c["id"], "name": c["name"], "email": c["email"]}
    # Currency and collection also come from the customer (UGX above is the customer's, not
    # the USD fallback; automatic collection is off unless the customer or request asks).
    assert (c["currency"], c["autoCollection"], inv["autoCollection"]) == ("UGX", True, True)
    plain = ok(
        api.post(
            "/api/invoices",
            json={
                "customerId": new_customer(api, currency="NGN")["id"],
                "items": [{"description": "x", "unitAmount": 100}],
            },
        ),
        201,
    )
    assert (plain["currency"], plain["autoCollection"]) == ("NGN", False)
    assert plain["dueDate"] in (days_from_today(0), days_from_today(1))  # no net days: due today


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (
            {"customerId": "cust_unknown", "items": [{"description": "x", "unitAmount": 1}]},
            400,
            "customer_not_found",
            "customerId",
        ),
        (
            {"items": [{"description": "x", "quantity": -1, "unitAmount": 1}]},
            400,
            "parameter_invalid",
            "items.0.quantity",
        ),
        (
            {"currency": "XYZ", "items": [{"description": "x", "unitAmount": 1}]},
            400,
            "currency_unsupported",
            "currency",
        ),
        (
            {"dueDate": "2026-02-30", "items": [{"description": "x", "unitAmount": 1}]},
            400,
            "parameter_invalid",
            "dueDate",
        ),
        ({"items": []}, 400, "parameter_invalid", "items"),
        ({"items": [{"description": "x", "unitAmount": 1}], "color": "red"}, 400, "parameter_invalid", "color"),
    ],
)
def test_bad_invoice_input_gets_a_clear_error(api, body, status, code, field):
    c = new_customer(api)
    err = error(api.post("/api/invoices", json={"customerId": c["id"], **body}), status, code)
    assert err["field"] == field and err["message"]


def test_patch_replaces_fields_and_items_only_on_drafts(api):
    c = new_customer(api)
    inv = new_invoice(api, c, 1000, 2000)
    patched = ok(
        api.patch(
            f"/api/invoices/{inv['id']}",
            json={"items": [{"description": "One", "quantity": 3, "unitAmount": 700}], "notes": "changed"},
        )
    )
    assert patched["total"] == 2100 and patched["notes"] == "changed" and len(patched["items"]) == 1
    ok(api.post(f"/api/invoices/{inv['id']}/finalize"))
    error(api.patch(f"/api/invoices/{inv['id']}", json={"notes": "late"}), 409, "invoice_not_editable")


def test_pending_invoice_collects_charges_then_closes(api):
    c = new_customer(api)
    inv = new_invoice(api, c, 1000)
    with_charge = ok(
        api.post(f"/api/invoices/{inv['id']}/charges", json={"description": "Usage", "quantity": 4, "unitAmount": 250})
    )
    assert with_charge["total"] == 2000
    closed = ok(api.post(f"/api/invoices/{inv['id']}/close"))
    assert closed["status"] == "PENDING" and closed["number"].startswith("INV-")
    error(
        api.post(f"/api/invoices/{inv['id']}/charges", json={"description": "More", "unitAmount": 1}),
        409,
        "invoice_not_editable",
    )


def test_lifecycle_send_partial_payment_full_payment(api):
    c = new_customer(api)
    inv = new_invoice(api, c, 100000)
    sent = ok(api.post(f"/api/invoices/{inv['id']}/send"))
    assert sent["status"] == "PENDING" and sent["sentAt"] and sent["number"]
    part = ok(
        api.post(
            f"/api/invoices/{inv['id']}/mark-paid",
            json={"amount": 30000, "method": "bank_transfer", "reference": "TX-1", "date": "2026-11-20"},
        )
    )
    assert (part["status"], part["amountPaid"], part["amountDue"]) == ("PARTIALLY_PAID", 30000, 70000)
    paid = ok(
        api.post(f"/api/invoices/{inv['id']}/record-payment", json={"paymentMethod": "cash"})
    )  # NovaBilling's name
    assert (paid["status"], paid["amountDue"], paid["paidAt"] is not None) == ("PAID", 0, True)
    for action in ("void", "write-off", "finalize"):
        error(api.post(f"/api/invoices/{inv['id']}/{action}"), 409, "invoice_paid")
    error(api.post(f"/api/invoices/{inv['id']}/mark-paid", json={"amount": 1}), 409, "invoice_paid")
    events = ok(api.get(f"/api/invoices/{inv['id']}/events"))["data"]
    types = [e["type"] for e in events]
    assert types == [
        "invoice.created",
        "invoice.finalized",
        "invoice.sent",
        "invoice.payment_received",
        "invoice.payment_received",
        "invoice.paid",
    ]
    received = events[3]["data"]
    assert (received["isPartial"], received["isFullyPaid"]) == (True, False)
    assert events[4]["data"]["isFullyPaid"] is True
    assert [events[3]["data"]["method"], events[4]["data"]["method"]] == ["bank_transfer", "cash"]


def test_as_of_shows_the_invoice_as_it_was(api):
    c = new_customer(api)
    inv = new_invoice(api, c, 5000)
    ok(api.post(f"/api/invoices/{inv['id']}/finalize"))
    events = ok(api.get(f"/api/invoices/{inv['id']}/events"))["data"]
    then = ok(api.get(f"/api/invoices/{inv['id']}", params={"asOf": events[0]["time"]}))
    now = ok(api.get(f"/api/invoices/{inv['id']}"))
    assert (then["status"], now["status"]) == ("DRAFT", "PENDING")


def test_partial_payment_refused_when_the_invoice_does_not_allow_it(api):
    c = new_customer(api)
    inv = new_invoice(api, c, 5000, allowPartialPayments=False)
    ok(api.post(f"/api/invoices/{inv['id']}/finalize"))
    error(api.post(f"/api/invoices/{inv['id']}/mark-paid", json={"amount": 100}), 409, "partial_payment_not_allowed")


def test_void_write_off_delete_and_their_refusals(api):
    c = new_customer(api)
    draft = new_invoice(api, c, 1000)
    error(api.post(f"/api/invoices/{draft['id']}/void"), 409, "invoice_draft")
    assert api.delete(f"/api/invoices/{draft['id']}").status_code == 204
    error(api.get(f"/api/invoices/{draft['id']}"), 404, "resource_missing")

    to_void = new_invoice(api, c, 1000)
    ok(api.post(f"/api/invoices/{to_void['id']}/finalize"))
    error(api.delete(f"/api/invoices/{to_void['id']}"), 409, "invoice_pending")
    voided = ok(api.post(f"/api/invoices/{to_void['id']}/void", json={"reason": "duplicate"}))
    assert (voided["status"], voided["voidReason"], voided["amountDue"]) == ("VOID", "duplicate", 0)
    error(api.post(f"/api/invoices/{to_void['id']}/send"), 409, "invoice_void")

    paid_part = new_invoice(api, c, 1000)
    ok(api.post(f"/api/invoices/{paid_part['id']}/finalize"))
    ok(api.post(f"/api/invoices/{paid_part['id']}/mark-paid", json={"amount": 400}))
    error(api.post(f"/api/invoices/{paid_part['id']}/void"), 409, "invoice_has_payments")
    off = ok(api.post(f"/api/invoices/{paid_part['id']}/write-off", json={"reason": "bad debt"}))
    assert (off["status"], off["writeOffAmount"], off["amountPaid"] + off["writeOffAmount"]) == (
        "WRITTEN_OFF",
        600,
        1000,
    )

    async def credit_note():
        return ok(api.get("/api/credit-notes", params={"invoiceId": paid_part["id"]}))["data"]

    [note] = asyncio.run(eventually(credit_note))
    assert (note["type"], note["amount"], note["number"][:3]) == ("adjustment", 600, "CN-")
    assert ok(api.get(f"/api/credit-notes/{note['id']}")) == note


def test_import_a_historical_invoice_with_its_number(api):
    c = new_customer(api)
    body = {
        "customerId": c["id"],
        "number": f"LEGACY-{uuid.uuid4().hex[:6]}",
        "issuedOn": "2024-03-01",
        "dueDate": "2024-03-31",
        "status": "PAID",
        "items": [{"description": "Old work", "unitAmount": 9000}],
    }
    imported = ok(api.post("/api/invoices/import", json=body), 201)
    assert (imported["status"], imported["number"], imported["amountPaid"]) == ("PAID", body["number"], 9000)
    error(api.post("/api/invoices/import", json=body), 409, "number_taken")


def test_reference_is_unique_per_tenant(api, gateway):
    c = new_customer(api)
    ref = f"REF-{uuid.uuid4().hex[:6]}"
    new_invoice(api, c, 100, reference=ref)
    error(
        api.post(
            "/api/invoices",
            json={"customerId": c["id"], "reference": ref, "items": [{"description": "x", "unitAmount": 1}]},
        ),
        409,
        "reference_taken",
    )
    other = create_tenant("Other Co")
    with httpx.Client(base_url=gateway, headers={"X-API-Key": other["apiKey"]}) as other_api:
        wait_until_key_active(other_api)
        other_customer = new_customer(other_api)
        new_invoice(other_api, other_customer, 100, reference=ref)  # another tenant may use it


def test_numbers_are_sequential_without_gaps_under_concurrency(api):
    c = new_customer(api)
    invoices = [new_invoice(api, c, 100) for _ in range(12)]

    async def finalize_all():
        async with httpx.AsyncClient(base_url=str(api.base_url), headers=dict(api.headers), timeout=30) as client:
            return await asyncio.gather(*(client.post(f"/api/invoices/{i['id']}/finalize") for i in invoices))

    numbers = sorted(r.json()["number"] for r in asyncio.run(finalize_all()))
    sequence = [int(n.rsplit("-", 1)[1]) for n in numbers]
    assert len(set(numbers)) == 12 and sequence == list(range(sequence[0], sequence[0] + 12))


def test_list_filters_operators_search_sort_and_cursor(api):
    c = new_customer(api, name=f"Filter Person {uuid.uuid4().hex[:6]}")
    made = [
        new_invoice(api, c, amount, dueDate=days_from_today(days))
        for amount, days in [(1000, 1), (5000, 5), (9000, 9), (20000, 20)]
    ]
    ok(api.post(f"/api/invoices/{made[3]['id']}/finalize"))

    async def all_listed():
        page = ok(api.get("/api/invoices", params={"customerId": c["id"], "limit": 100}))
        return page if page["meta"]["total"] == 4 and any(i["status"] == "PENDING" for i in page["data"]) else None

    page = asyncio.run(eventually(all_listed))
    assert [i["id"] for i in page["data"]] == [i["id"] for i in reversed(made)]  # newest first
    q = lambda **p: [i["total"] for i in ok(api.get("/api/invoices", params={"customerId": c["id"], **p}))["data"]]  # noqa: E731
    assert q(**{"total[gte]": 5000, "sort": "total"}) == [5000, 9000, 20000]
    assert q(**{"status[in]": "PENDING,OVERDUE"}) == [20000]
    assert q(status="DRAFT", sort="-total") == [9000, 5000, 1000]
    assert q(**{"dueDate[before]": days_from_today(6), "sort": "dueDate"}) == [1000, 5000]
    assert q(customerEmail=c["email"].upper(), sort="total") == [1000, 5000, 9000, 20000]
    assert q(search=c["name"].split()[-1], sort="total") == [1000, 5000, 9000, 20000]
    number = ok(api.get(f"/api/invoices/{made[3]['id']}"))["number"]
    assert [i["id"] for i in ok(api.get("/api/invoices", params={"search": number}))["data"]] == [made[3]["id"]]
    # The creation days come from the invoices themselves, so the range holds across a UTC midnight.
    created = sorted(i["createdAt"][:10] for i in page["data"])
    assert len(q(dateFrom=created[0], dateTo=created[-1])) == 4 and q(dateTo="2020-01-01") == []

    first = ok(api.get("/api/invoices", params={"customerId": c["id"], "limit": 3, "sort": "total"}))
    assert first["meta"]["hasMore"] and first["meta"]["total"] == 4
    rest = ok(
        api.get(
            "/api/invoices",
            params={"customerId": c["id"], "limit": 3, "sort": "total", "cursor": first["meta"]["nextCursor"]},
        )
    )
    assert [i["total"] for i in first["data"] + rest["data"]] == [1000, 5000, 9000, 20000] and not rest["meta"][
        "hasMore"
    ]
    error(api.get("/api/invoices", params={"sort": "color"}), 400, "parameter_invalid")
    error(api.get("/api/invoices", params={"total[gte]": "lots"}), 400, "parameter_invalid")
    error(api.get("/api/invoices", params={"cursor": "garbage"}), 400, "cursor_invalid")


def test_list_takes_chargebees_operators_snake_case_names_and_novabillings_status_names(api):
    c = new_customer(api, name=f"Operator Person {uuid.uuid4().hex[:6]}")
    made = [
        new_invoice(api, c, amount, reference=f"OPS-{uuid.uuid4().hex[:6]}-{amount}") for amount in (1000, 5000, 9000)
    ]
    issued = ok(api.post(f"/api/invoices/{made[2]['id']}/finalize"))

    def q(**p) -> list[int]:
        page = ok(api.get("/api/invoices", params={"customerId": c["id"], "sort": "total", **p}))
        return [i["total"] for i in page["data"]]

    assert q(**{"status[is]": "DRAFT"}) == [1000, 5000]
    assert q(**{"status[is_not]": "DRAFT"}) == [9000]
    assert q(**{"total[not_in]": "1000,9000"}) == [5000]
    assert q(**{"total[in]": "[1000, 9000]"}) == [1000, 9000]  # Chargebee's JSON array
    assert q(**{"total[between]": "[1000,5000]"}) == [1000, 5000]  # inclusive, like Chargebee's
    assert q(**{"reference[starts_with]": made[1]["reference"][:10]}) == [5000]
    assert q(**{"reference[starts_with]": "OPS-%"}) == []  # a wildcard is a character like any other
    assert q(**{"number[is_present]": "true"}) == [9000]
    assert q(**{"number[is_present]": "false"}) == [1000, 5000]
    assert q(status="FINALIZED") == [9000]  # the guide's name for an issued invoice
    assert q(**{"customer_id": c["id"], "amount_due[gte]": 5000}) == [5000, 9000]  # snake_case names
    assert issued["status"] == "PENDING"
    ok(api.post(f"/api/invoices/{made[1]['id']}/finalize"))
    ok(api.post(f"/api/invoices/{made[1]['id']}/void"))
    assert q(status="CANCELED") == [5000]  # the product's name for a voided invoice
    assert q(**{"status[in]": "FINALIZED,CANCELED"}) == [5000, 9000]


def test_pdf_link_is_signed_expiring_and_renders_the_invoice(api, tenant):
    c = new_customer(api, name="Pdf Buyer")
    inv = new_invoice(api, c, 180000, 25000)
    inv = ok(api.post(f"/api/invoices/{inv['id']}/finalize"))
    ok(api.post(f"/api/invoices/{inv['id']}/mark-paid", json={"amount": 5000}))
    link = ok(api.get(f"/api/invoices/{inv['id']}/pdf"))
    assert link["expiresAt"] and "signature=" in link["url"]
    pdf = httpx.get(link["url"], timeout=60)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    for expected in (inv["number"], "Pdf Buyer", "UGX205,000", "UGX5,000", "UGX200,000", "Amount due"):
        assert expected in text, (expected, text)
    tampered = link["url"].replace("signature=", "signature=0")
    assert httpx.get(tampered).status_code == 403

    # Expiring: the link lasts the documented hour, and once past its expiry it answers 410.
    # The local stack signs with the development secret, so the test can sign a link that
    # expired a minute ago, correctly signed, rather than wait an hour.
    expires_at = datetime.fromisoformat(link["expiresAt"].replace("Z", "+00:00"))
    assert 3600 - 120 <= (expires_at - datetime.now(UTC)).total_seconds() <= 3600 + 5
    expired = signed_url(tenant["world"], inv["id"], InvoicingSettings(), now=time.time() - 3660, ttl_s=3600)
    path = expired["url"][expired["url"].index("/api/") :]
    r = httpx.get(link["url"][: link["url"].index("/api/")] + path)
    assert r.status_code == 410 and r.json()["error"]["code"] == "link_expired", r.text


def test_idempotency_key_replays_or_refuses(api):
    c = new_customer(api)
    body = {"customerId": c["id"], "items": [{"description": "Once", "unitAmount": 100}]}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = api.post("/api/invoices", json=body, headers=key)
    again = api.post("/api/invoices", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    error(api.post("/api/invoices", json={**body, "notes": "different"}, headers=key), 422, "idempotency_key_reused")


async def _publish(tenant: str, topic: str, event_type: str, invoice_id: str, data: dict, sequence: int = 1) -> None:
    """A made-up fact on a live topic, to reach states a real payment cannot (overdue, exhausted).
    Safe on the shared stack: it names this module's own new tenant and one of its invoices, and
    every consumer scopes by tenant and invoice, so no other test's (or chaos run's) data can see
    it. tests/e2e/test_payment_round_trip.py covers the same path with real payments instead."""
    assert tenant.startswith("ten_"), tenant
    event = CloudEvent.new(
        type=event_type, source="/billstream/test", subject=invoice_id, tenant_id=tenant, data=data
    ).model_copy(update={"sequence": str(sequence)})
    await produce(KAFKA, topic, [event])


def test_payments_and_dunning_facts_arrive_over_kafka(api, tenant):
    t = tenant["world"]
    c = new_customer(api)
    inv = ok(api.post(f"/api/invoices/{new_invoice(api, c, 10000)['id']}/finalize"))
    iid = inv["id"]

    def status_is(expected):
        async def check():
            got = ok(api.get(f"/api/invoices/{iid}"))
            return got if got["status"] == expected else None

        return asyncio.run(eventually(check))

    asyncio.run(
        _publish(t, "billing.dunning", "dunning.due_date_passed", iid, {"invoiceId": iid, "dueDate": inv["dueDate"]})
    )
    status_is("OVERDUE")
    asyncio.run(
        _publish(
            t,
            "billing.payments",
            "payment.failed",
            iid,
            {
                "paymentId": "pay_x1",
                "invoiceId": iid,
                "amount": 10000,
                "reasonCode": "card_declined",
                "automatic": True,
                "attempt": 1,
            },
        )
    )
    status_is("FAILED")
    asyncio.run(
        _publish(
            t,
            "billing.dunning",
            "dunning.retry_scheduled",
            iid,
            {
                "invoiceId": iid,
                "attempt": 2,
                "dunning": {
                    "invoiceId": iid,
                    "status": "IN_PROGRESS",
                    "attempts": 1,
                    "nextRetryAt": "2026-12-04T00:00:00Z",
                },
            },
            sequence=2,
        )
    )

    async def dunning_shown():
        got = ok(api.get(f"/api/invoices/{iid}"))
        return got["dunningStatus"] == "IN_PROGRESS" and got["nextRetryAt"] == "2026-12-04T00:00:00Z"

    asyncio.run(eventually(dunning_shown))
    # The list filters on it (Chargebee's dunning_status too); an invoice dunning never took up has none.
    other = ok(api.post(f"/api/invoices/{new_invoice(api, c, 500)['id']}/finalize"))

    def listed(**params) -> list[str]:
        return [v["id"] for v in ok(api.get("/api/invoices", params={"customerId": c["id"], **params}))["data"]]

    assert listed(dunningStatus="IN_PROGRESS") == [iid]
    assert listed(dunning_status="in_progress,stopped") == [iid]
    assert listed(**{"dunningStatus[is_present]": "false"}) == [other["id"]]
    assert listed(**{"dunningStatus[not_in]": "IN_PROGRESS"}) == [other["id"]]
    assert listed(dunningStatus="SUCCESS") == []
    error(api.get("/api/invoices", params={"dunningStatus": "RUNNING"}), 400, "parameter_invalid")

    # Paid with 2500 too much: the rest becomes the customer's credit.
    asyncio.run(
        _publish(
            t,
            "billing.payments",
            "payment.succeeded",
            iid,
            {
                "paymentId": "pay_x2",
                "invoiceId": iid,
                "amount": 12500,
                "currency": "UGX",
                "provider": "sandbox",
                "method": "card",
            },
        )
    )
    paid = status_is("PAID")
    assert paid["amountPaid"] == 10000
    assert ok(api.get(f"/api/customers/{c['id']}"))["creditBalance"] == 2500

    asyncio.run(
        _publish(
            t,
            "billing.payments",
            "payment.refunded",
            iid,
            {
                "paymentId": "pay_x2",
                "invoiceId": iid,
                "refundId": "re_1",
                "amount": 4000,
                "amountRefunded": 4000,
                "reason": "goodwill",
            },
        )
    )

    async def refunded():
        got = ok(api.get(f"/api/invoices/{iid}"))
        return got["amountRefunded"] == 4000

    asyncio.run(eventually(refunded))

    # The credit is applied automatically to the customer's next invoice.
    nxt = ok(api.post(f"/api/invoices/{new_invoice(api, c, 6000)['id']}/finalize"))
    assert (nxt["creditsApplied"], nxt["amountDue"], nxt["status"]) == (2500, 3500, "PARTIALLY_PAID")
    assert ok(api.get(f"/api/customers/{c['id']}"))["creditBalance"] == 0

    other = ok(api.post(f"/api/invoices/{new_invoice(api, c, 7000)['id']}/finalize"))
    asyncio.run(
        _publish(
            t,
            "billing.dunning",
            "dunning.exhausted",
            other["id"],
            {"invoiceId": other["id"], "attempts": 4, "finalAction": "mark_uncollectible"},
        )
    )
    iid = other["id"]
    status_is("UNCOLLECTIBLE")


def test_events_from_another_tenant_do_not_touch_the_invoice(api, tenant):
    c = new_customer(api)
    inv = ok(api.post(f"/api/invoices/{new_invoice(api, c, 10000)['id']}/finalize"))
    asyncio.run(
        _publish(
            f"ten_someone_else_{uuid.uuid4().hex[:8]}",
            "billing.payments",
            "payment.succeeded",
            inv["id"],
            {"paymentId": "pay_evil", "invoiceId": inv["id"], "amount": 10000, "method": "card"},
        )
    )
    asyncio.run(
        _publish(
            tenant["world"],
            "billing.payments",
            "payment.succeeded",
            inv["id"],
            {"paymentId": "pay_ok", "invoiceId": inv["id"], "amount": 1, "method": "card"},
        )
    )

    async def second_seen():
        return ok(api.get(f"/api/invoices/{inv['id']}"))["amountPaid"] == 1

    asyncio.run(eventually(second_seen))  # events arrive in order on the invoice's partition


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (
            {"items": [{"description": "x", "quantity": 10000, "unitAmount": 10**15}]},
            "amount_too_large",
            "items.0.unitAmount",
        ),
        (
            {"items": [{"description": "x", "quantity": 10000, "unitAmount": 10**14}]},
            "amount_too_large",
            "items.0.amount",
        ),
        ({"items": [{"description": "x", "unitAmount": 10**14}] * 20}, "amount_too_large", "subtotal"),
        (
            {"items": [{"description": "x", "unitAmount": 1, "discount": {"amount": 10**30}}]},
            "amount_too_large",
            "items.0.discount.amount",
        ),
        ({"dueDate": "9999-12-31", "items": [{"description": "x", "unitAmount": 1}]}, "date_out_of_range", "dueDate"),
    ],
)
def test_amounts_and_dates_have_documented_bounds(api, body, code, field):
    c = new_customer(api)
    err = error(api.post("/api/invoices", json={"customerId": c["id"], **body}), 400, code)
    assert err["field"] == field and err["message"]


def test_offline_payment_amount_and_date_are_bounded(api):
    inv = ok(api.post(f"/api/invoices/{new_invoice(api, new_customer(api), 1000)['id']}/finalize"))
    error(api.post(f"/api/invoices/{inv['id']}/mark-paid", json={"amount": 10**19}), 400, "amount_too_large")
    error(
        api.post(f"/api/invoices/{inv['id']}/mark-paid", json={"amount": 10, "date": "9999-12-31"}),
        400,
        "date_out_of_range",
    )


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"total[gte]": "99999999999999999999"}, "parameter_invalid", "total[gte]"),
        ({"dueDate[before]": "9999-12-31"}, "parameter_invalid", "dueDate[before]"),
        ({"dateTo": "9999-12-31"}, "parameter_invalid", "createdAt[lt]"),
        ({"page": str(10**20)}, "parameter_invalid", "page"),
        ({"colour": "red"}, "parameter_unknown", "colour"),
        ({"status": "FINISHED"}, "parameter_invalid", "status"),
        ({"total[between]": "1,2,3"}, "parameter_invalid", "total[between]"),
        ({"total[starts_with]": "1"}, "parameter_invalid", "total[starts_with]"),
        ({"number[is_present]": "maybe"}, "parameter_invalid", "number[is_present]"),
        ({"status[in]": '["PENDING"'}, "parameter_invalid", "status[in]"),
        ({"total[near]": "5"}, "parameter_invalid", "total[near]"),
        ({"status[in]": "[" * 1500}, "parameter_invalid", "status[in]"),  # nested past the JSON parser
    ],
)
def test_list_parameters_out_of_bounds_or_unknown_get_a_400_not_a_500(api, params, code, field):
    err = error(api.get("/api/invoices", params=params), 400, code)
    assert err["field"] == field
    if field == "status":
        assert "PENDING" in err["message"] and "PARTIALLY_PAID" in err["message"]  # names what is allowed
    if code == "parameter_unknown":
        assert "customerId" in err["message"]


def test_numbering_steps_over_imported_numbers(gateway):
    t = create_tenant(f"Numbering {uuid.uuid4().hex[:6]}")
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {t['apiKey']}"}, timeout=30) as api:
        wait_until_key_active(api)
        c = new_customer(api)
        year = days_from_today(0)[:4]
        for n in (1, 2, 4):
            ok(
                api.post(
                    "/api/invoices/import",
                    json={
                        "customerId": c["id"],
                        "number": f"INV-{year}-{n:06d}",
                        "issuedOn": days_from_today(-10),
                        "dueDate": days_from_today(20),
                        "status": "PENDING",
                        "items": [{"description": "Old", "unitAmount": 500}],
                    },
                ),
                201,
            )
        numbers = [ok(api.post(f"/api/invoices/{new_invoice(api, c, 100)['id']}/finalize"))["number"] for _ in range(3)]
        assert numbers == [f"INV-{year}-000003", f"INV-{year}-000005", f"INV-{year}-000006"]
        ok(
            api.post(
                "/api/invoices/import",
                json={
                    "customerId": c["id"],
                    "number": f"CN-{year}-000001",
                    "issuedOn": days_from_today(-10),
                    "status": "VOID",
                    "items": [{"description": "Old note", "unitAmount": 500}],
                },
            ),
            201,
        )
        pending = ok(api.post(f"/api/invoices/{new_invoice(api, c, 900)['id']}/finalize"))
        ok(api.post(f"/api/invoices/{pending['id']}/write-off", json={"reason": "bad debt"}))

        async def note():
            return ok(api.get("/api/credit-notes", params={"invoiceId": pending["id"]}))["data"]

        assert [n["number"] for n in asyncio.run(eventually(note))] == [f"CN-{year}-000002"]


def test_nul_characters_get_a_400_in_every_service(api):
    err = error(api.post("/api/customers", json={"name": "Nul\x00Person"}), 400, "parameter_invalid")
    assert err["field"] == "body"
    for path in ("/api/invoices", "/api/payments", "/api/webhook-endpoints"):
        error(api.get(path, params={"customerId": "a\x00b"}), 400, "parameter_invalid")
    # nginx itself refuses a NUL in the path (400, its own page); the services answer 404 behind it.
    assert api.get("/api/invoices/inv_a%00b").status_code == 400
