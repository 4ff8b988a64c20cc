"""Customer e-mails as they arrive in the local mailbox: the pay link, followed through :3000,
opens the hosted payment page for that invoice (a link whose signature does not match opens
nothing), and the receipt carries the invoice PDF."""

import email
import email.policy
import io
import re
import uuid

import httpx
from pypdf import PdfReader

from deploy.local.mailbox import HOST, HTTP_PORT
from tests.conftest import eventually
from tests.e2e.test_invoicing_api import new_customer, new_invoice, ok, tenant  # noqa: F401 - fixture

MAILBOX = f"http://{HOST}:{HTTP_PORT}"


async def mail_to(address: str, subject_part: str) -> email.message.EmailMessage:
    async def find():
        async with httpx.AsyncClient(base_url=MAILBOX) as box:
            # The local mailbox keeps every e-mail of every run: ask for this test's unique address
            # only (a mailbox started before ?to= existed ignores it, so filter here too).
            mine = [
                m
                for m in (await box.get("/api/messages", params={"to": address})).json()
                if address in (m["to"] or "") and subject_part in (m["subject"] or "")
            ]
            return (await box.get(f"/messages/{mine[0]['id']}.eml")).content if mine else None

    return email.message_from_bytes(await eventually(find, timeout=30), policy=email.policy.default)


async def test_the_emailed_pay_link_opens_the_hosted_page_for_the_invoice(gateway, tenant):  # noqa: F811
    headers = {"Authorization": f"Bearer {tenant['apiKey']}"}
    with httpx.Client(base_url=gateway, headers=headers, timeout=30) as api:
        customer = new_customer(api, email=f"payer.{uuid.uuid4().hex[:8]}@example.com")
        invoice = ok(api.post(f"/api/invoices/{new_invoice(api, customer, 250000)['id']}/send"))

    text = (await mail_to(customer["email"], invoice["number"])).get_body(("plain",)).get_content()
    [link] = re.findall(r"https?://\S+/pay/invoice/\S+", text)
    assert invoice["id"] in link
    path = link[link.index("/pay/") :]

    async with httpx.AsyncClient(base_url=gateway, timeout=30) as web:

        async def page():
            r = await web.get(path, follow_redirects=True)
            return r if r.status_code == 200 else None

        opened = await eventually(page, timeout=30)  # payments may still be taking in the invoice
        assert re.search(r"/pay/[\w-]{20,}$", str(opened.url)) and invoice["number"] in opened.text
        again = await web.get(path)
        assert again.status_code == 303 and str(opened.url).endswith(again.headers["location"])  # same session

        tampered = await web.get(path[:-4] + "0000")
        assert tampered.status_code == 404 and "not valid" in tampered.text
        other = await web.get(path.replace(invoice["id"], invoice["id"][:-1] + "x"))
        assert other.status_code == 404


async def test_the_receipt_email_carries_the_invoice_pdf(gateway, tenant):  # noqa: F811
    headers = {"Authorization": f"Bearer {tenant['apiKey']}"}
    with httpx.Client(base_url=gateway, headers=headers, timeout=30) as api:
        customer = new_customer(api, email=f"receipt.{uuid.uuid4().hex[:8]}@example.com")
        invoice = ok(api.post(f"/api/invoices/{new_invoice(api, customer, 180000)['id']}/send"))
        ok(api.post(f"/api/invoices/{invoice['id']}/mark-paid", json={"amount": 180000, "method": "cash"}))

    receipt = await mail_to(customer["email"], "Receipt")
    [attachment] = list(receipt.iter_attachments())
    assert attachment.get_filename() == f"{invoice['number']}.pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(attachment.get_content())).pages)
    assert invoice["number"] in text and "UGX180,000" in text
