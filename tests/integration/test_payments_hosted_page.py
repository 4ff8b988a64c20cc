"""The hosted payment page in a real headless Chromium (Debian's, driven by Playwright): pay part,
then the rest, land on the return URL each time, and come back to a receipt; a declined card;
draft and void invoices. Screenshots go to test-artifacts/."""

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import async_playwright

from tests.support.payments_server import ARTIFACTS, free_port, invoice, payments_server  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def return_site():
    """The merchant's site the customer returns to: records each path it is asked for."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        seen.append(request_line.split(" ")[1])
        body = b"<html><body><h1 id='thanks'>Thanks for your order</h1></body></html>"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}/orders/42/thank-you", seen
    server.close()
    await server.wait_closed()


@pytest.fixture
async def browser():
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"hosted-page-{name}.png"), full_page=True)


async def finalized(server, tenant, **kw) -> dict:
    inv = invoice(**kw)
    await server.publish_invoice(tenant, "invoice.finalized", inv, number=inv["number"])

    async def there():
        return await server.fetch("SELECT 1 FROM payable_invoices WHERE invoice_id = $1", inv["id"])

    from tests.conftest import eventually

    await eventually(there)
    return inv


async def test_customer_pays_part_then_the_rest_and_gets_a_receipt(payments_server, browser, return_site):
    server = payments_server
    return_url, seen = return_site
    tenant, client = await server.tenant("Kampala Coffee Roasters")
    inv = await finalized(server, tenant, total=100000, allow_partial=True, currency="UGX")
    checkout = (await client.post(f"/api/invoices/{inv['id']}/checkout", json={"returnUrl": return_url})).json()
    assert checkout["returnUrl"] == return_url and checkout["expiresAt"].endswith("Z")

    page = await browser.new_page()
    await page.goto(checkout["checkoutUrl"])
    assert await page.text_content("#business") == "Kampala Coffee Roasters"
    assert "Pro Plan - Monthly" in await page.text_content("#lines")
    assert await page.text_content("#due-date") == "2026-12-31"
    assert "100,000" in await page.text_content("#total")
    assert "100,000" in await page.text_content("#remaining")
    await shot(page, "1-open")

    await page.fill("#amount", "40000")
    await page.check("#method-mobile")
    await page.fill("#mobile_number", "256700000001")
    await page.click("#pay-button")
    await page.wait_for_url(f"{return_url}?*", timeout=20000)
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"status": ["success"], "invoice": [inv["id"]]}
    assert await page.text_content("#thanks") == "Thanks for your order"

    await page.goto(checkout["checkoutUrl"])
    assert "40,000" in await page.text_content("#paid")
    assert "60,000" in await page.text_content("#remaining")
    assert await page.input_value("#amount") == "60000"
    await shot(page, "2-partly-paid")

    await page.fill("#card_number", "4242 4242 4242 4242")
    await page.click("#pay-button")
    await page.wait_for_url(f"{return_url}?*", timeout=20000)
    assert len([p for p in seen if "status=success" in p]) == 2

    await page.goto(checkout["checkoutUrl"])
    assert "Paid in full" in await page.text_content("#receipt")
    assert await page.locator("#pay-form").count() == 0
    assert "100,000" in await page.text_content("#paid")
    await shot(page, "3-receipt")


async def test_declined_card_is_explained_and_the_customer_can_try_again(payments_server, browser):
    server = payments_server
    tenant, client = await server.tenant("Nile Supplies")
    inv = await finalized(server, tenant, total=2500, currency="USD")
    checkout = (await client.post(f"/api/invoices/{inv['id']}/checkout", json={})).json()
    page = await browser.new_page()
    await page.goto(checkout["checkoutUrl"])
    assert "$25.00" in await page.text_content("#remaining")
    assert await page.get_attribute("#amount", "readonly") is not None  # full payment only
    await page.fill("#card_number", "4000000000000002")
    await page.click("#pay-button")
    await page.wait_for_selector("#payment-failed", timeout=20000)
    assert "declined" in await page.text_content("#payment-failed")
    await shot(page, "4-declined")
    await page.click("#try-again")
    assert "$25.00" in await page.text_content("#remaining")


async def test_draft_and_void_invoices_show_a_clear_status(payments_server, browser):
    """A draft gets a link whose page says so (payments may not have heard of a finalize a moment
    old); a link made before the invoice was voided says it was voided; a void invoice gets no new
    link (409 invoice_not_payable)."""
    from tests.conftest import eventually

    server = payments_server
    tenant, client = await server.tenant("Draft & Void Ltd")
    page = await browser.new_page()
    draft = invoice(status="DRAFT")
    await server.publish_invoice(tenant, "invoice.created", draft)

    async def there():
        return await server.fetch("SELECT 1 FROM payable_invoices WHERE invoice_id = $1", draft["id"])

    await eventually(there)
    voided = await finalized(server, tenant)
    links = {}
    for inv in (draft, voided):
        r = await client.post(f"/api/invoices/{inv['id']}/checkout", json={})
        assert r.status_code == 201, r.text
        links[inv["id"]] = r.json()["checkoutUrl"]
    await server.publish_invoice(tenant, "invoice.voided", {**voided, "status": "VOID", "amountDue": 0})

    async def void_heard():
        return await server.fetch(
            "SELECT 1 FROM payable_invoices WHERE invoice_id = $1 AND status = 'VOID'", voided["id"]
        )

    await eventually(void_heard)
    for inv, words, name in ((draft, "still a draft", "5-draft"), (voided, "voided", "6-void")):
        await page.goto(links[inv["id"]])
        assert words in await page.text_content("#status-message")
        assert await page.locator("#pay-form").count() == 0
        await shot(page, name)
    again = await client.post(f"/api/invoices/{voided['id']}/checkout", json={})
    assert again.status_code == 409 and again.json()["error"]["code"] == "invoice_not_payable", again.text
    response = await page.goto(server.url + "/pay/not-a-real-token")
    assert response.status == 404 and "does not exist" in await page.text_content("#message")


async def test_the_page_says_only_what_it_knows_and_bad_forms_get_a_400(payments_server):
    server = payments_server
    tenant, client = await server.tenant("Careful Co")
    inv = await finalized(server, tenant, total=5000, allow_partial=True, currency="USD")
    checkout = (await client.post(f"/api/invoices/{inv['id']}/checkout", json={})).json()
    import httpx

    async with httpx.AsyncClient(timeout=20) as web:
        forged = await web.get(checkout["checkoutUrl"], params={"error": "Call +1-800-555-0199 to pay by phone"})
        assert forged.status_code == 200 and "800-555" not in forged.text and 'id="error"' not in forged.text
        known = await web.get(checkout["checkoutUrl"], params={"error": "payment_failed"})
        assert "did not go through" in known.text
        for body, why in (
            (b"amount=\xff\xfe&method=card", "not readable"),
            (b"amount=1e999999&method=card&card_number=4242424242424242", "no more than is due"),
        ):
            answer = await web.post(
                checkout["checkoutUrl"], content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
            assert answer.status_code == 400 and why in answer.text, (body, answer.status_code)
