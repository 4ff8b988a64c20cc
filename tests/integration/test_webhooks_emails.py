"""Customer e-mails received by a real SMTP server (the local mailbox, aiosmtpd) from the real
service process: invoice sent, partial payment, paid in full with the PDF attached, reminders."""

import re

import asyncpg
import httpx
from itsdangerous import BadSignature, TimestampSigner

from deploy.local.mailbox import Mailbox
from tests.conftest import eventually
from tests.support.webhooks_events import event, invoice_event, invoice_snapshot
from tests.support.webhooks_receivers import PdfServer
from tests.support.webhooks_service import add_tenant, free_port, start_webhooks  # noqa: F401 - fixture

PAY = "https://pay.example.test"


def link(invoice_id: str) -> str:
    """The signed pay link's fixed part (pinned, as docs/webhooks.md gives it); `signed_link_in`
    checks the token that follows it."""
    return f"/pay/invoice/{invoice_id}?sig="


def signed_link_in(text: str, invoice_id: str) -> bool:
    """Each token checked as shared/paylinks documents it, not with its code: itsdangerous'
    TimestampSigner, salt "pay-link", the local default secret, the invoice id as the message."""

    def good(token: str) -> bool:
        try:
            TimestampSigner("billstream-local-pay-links", salt="pay-link").unsign(
                f"{invoice_id}.{token}", max_age=90 * 86400
            )
        except BadSignature:
            return False
        return True

    tokens = re.findall(re.escape(PAY + link(invoice_id)) + r"([\w.-]+)", text)
    return bool(tokens) and all(good(t) for t in tokens)


async def test_customer_emails_reach_a_real_smtp_server(start_webhooks, database, tmp_path):
    with Mailbox(tmp_path / "mail", smtp_port=free_port(), http_port=0) as box, PdfServer() as pdf:
        svc = await start_webhooks(emails_enabled="true", smtp_port=box.smtp_port, public_url=PAY)
        tenant, _ = await add_tenant(database, "Acme & Sons Uganda")
        customer = {"id": "cust_1", "name": "Nakato <Achieng>", "email": "nakato@example.com"}
        inv = invoice_snapshot(customer=customer, number="INV-2026-000123")
        sent = invoice_event(
            "invoice.sent", tenant, {**inv, "sentAt": "2026-11-20T09:00:00Z"}, sequence=3, sentAt="2026-11-20T09:00:00Z"
        )
        partial = invoice_event(
            "invoice.payment_received",
            tenant,
            {**inv, "status": "PARTIALLY_PAID", "amountPaid": 80000, "amountDue": 100000},
            sequence=4,
            paymentId="pay_1",
            amount=80000,
            method="mobile_money",
            isPartial=True,
            isFullyPaid=False,
            amountPaid=80000,
            amountDue=100000,
        )
        full = invoice_event(
            "invoice.payment_received",
            tenant,
            {**inv, "status": "PAID", "amountPaid": 180000, "amountDue": 0},
            sequence=5,
            paymentId="pay_2",
            amount=100000,
            method="card",
            isPartial=False,
            isFullyPaid=True,
            amountPaid=180000,
            amountDue=0,
        )
        paid = invoice_event(
            "invoice.paid",
            tenant,
            {
                **inv,
                "status": "PAID",
                "amountPaid": 180000,
                "amountDue": 0,
                "paidAt": "2026-11-22T15:30:00Z",
                "pdfUrl": pdf.url,
            },
            sequence=6,
            paidAt="2026-11-22T15:30:00Z",
        )
        # A second invoice, in naira, overdue: the reminder carries only its id.
        naira = invoice_snapshot(
            customer={"id": "c2", "name": "Chidi", "email": "chidi@example.com"},
            number="INV-2026-000124",
            currency="NGN",
            total=4407500,
            amountDue=4407500,
            items=[{"description": "Website", "quantity": 1, "unitAmount": 4407500, "amount": 4407500}],
            dueDate="2026-11-15",
            status="OVERDUE",
        )
        naira_overdue = invoice_event("invoice.overdue", tenant, naira, sequence=4, dueDate="2026-11-15")
        reminder = event(
            "dunning.reminder_due",
            tenant,
            naira["id"],
            {
                "invoiceId": naira["id"],
                "kind": "after_due",
                "days": 3,
                "dunning": {"invoiceId": naira["id"], "status": "IN_PROGRESS"},
            },
        )
        settled_reminder = event(
            "dunning.reminder_due", tenant, inv["id"], {"invoiceId": inv["id"], "kind": "after_due", "days": 1}
        )

        await svc.publish("invoices", sent, partial, full, paid, naira_overdue)
        await svc.publish("invoices", sent)  # redelivered: still one e-mail
        await eventually(lambda: _count(box, 3))
        await svc.publish("dunning", reminder, settled_reminder)
        messages = await eventually(lambda: _count(box, 4))
        # Nothing more arrives: every event is handled (its e-mail rows are written in that
        # transaction) and no e-mail is left to send, so the mailbox holds all there will be.
        handled = [e.id for e in (sent, partial, full, paid, naira_overdue, reminder, settled_reminder)]
        await eventually(lambda: _all_sent(database, handled))
        messages = [m for _, m in box.messages()]
        assert len(messages) == 4, [m["Subject"] for m in messages]
        # A long subject is folded onto a continuation line; unfolded it keeps a leading space.
        by_subject = {m["Subject"].strip(): m for m in messages}

        m = by_subject["Invoice INV-2026-000123 from Acme & Sons Uganda: UGX180,000 due by December 31, 2026"]
        assert m["To"] == "nakato@example.com" and "Acme & Sons Uganda" in m["From"]
        text, html = _parts(m)
        assert "Amount due: UGX180,000" in text and "Due date: December 31, 2026" in text
        assert f"Pay now: {PAY}{link(inv['id'])}" in text
        assert f'href="{PAY}{link(inv["id"])}' in html and "Nakato &lt;Achieng&gt;" in html
        assert signed_link_in(text, inv["id"]) and signed_link_in(html, inv["id"])
        assert "Website hosting" in html and "Nakato <Achieng>" in text

        m = by_subject["Payment of UGX80,000 received for invoice INV-2026-000123: UGX100,000 remaining"]
        text, html = _parts(m)
        assert "Paid so far: UGX80,000 of UGX180,000" in text and "Balance remaining: UGX100,000" in text
        assert f"Pay the remaining balance: {PAY}{link(inv['id'])}" in text and "Pay remaining balance" in html

        m = by_subject["Receipt for invoice INV-2026-000123 from Acme & Sons Uganda: paid in full"]
        text, html = _parts(m)
        assert "Amount paid: UGX180,000" in text and "Paid on: November 22, 2026" in text
        assert f"View your receipt: {PAY}{link(inv['id'])}" in text and "View receipt" in html
        [attachment] = list(m.iter_attachments())
        assert attachment.get_filename() == "INV-2026-000123.pdf"
        assert attachment.get_content_type() == "application/pdf" and attachment.get_content() == PdfServer.PDF

        m = by_subject["Overdue: invoice INV-2026-000124 from Acme & Sons Uganda (NGN44,075.00)"]
        assert m["To"] == "chidi@example.com"
        text, _ = _parts(m)
        assert "was due on November 15, 2026 (3 days ago)" in text and f"{PAY}{link(naira['id'])}" in text

        # The mailbox page lists what it kept.
        async with httpx.AsyncClient() as client:
            listed = (await client.get(box.url + "api/messages")).json()
            assert sorted(x["subject"].strip() for x in listed) == sorted(by_subject)
            assert "INV-2026-000124" in (await client.get(box.url)).text


async def _count(box: Mailbox, n: int):
    return len(box.messages()) >= n


def _parts(message) -> tuple[str, str]:
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


async def test_an_email_waits_out_an_smtp_outage_and_is_sent_once(start_webhooks, database, tmp_path):
    port = free_port()  # nothing listens yet: the SMTP server is down
    svc = await start_webhooks(emails_enabled="true", smtp_port=port, public_url=PAY, email_retry_schedule_s=[0.5] * 40)
    tenant, _ = await add_tenant(database, "Outage Ltd")
    sent = invoice_event("invoice.sent", tenant, invoice_snapshot(), sequence=3)
    await svc.publish("invoices", sent)
    conn = await asyncpg.connect(database)
    try:

        async def failed_attempts():
            row = await conn.fetchrow(
                "SELECT status, attempts, last_error FROM customer_emails WHERE event_id = $1", sent.id
            )
            return row if row and row["attempts"] >= 2 else None

        row = await eventually(failed_attempts)
        assert row["status"] == "pending" and "Connection refused" in row["last_error"]

        with Mailbox(tmp_path / "mail", smtp_port=port, http_port=0) as box:  # the server comes back
            [(_, message)] = await eventually(lambda: _messages(box, 1))
            assert message["Subject"].strip().startswith("Invoice INV-2026-000123 from Outage Ltd")
            status = await eventually(
                lambda: conn.fetchval(
                    "SELECT status FROM customer_emails WHERE event_id = $1 AND status = 'sent'", sent.id
                )
            )
            assert status == "sent"
            # Sent once: nothing is left to send (a sent row is never picked up again), and
            # the SMTP server got one message.
            assert await conn.fetchval("SELECT count(*) FROM customer_emails WHERE status <> 'sent'") == 0
            assert len(box.messages()) == 1
    finally:
        await conn.close()


async def _all_sent(dsn: str, event_ids: list[str]) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        handled = await conn.fetchval("SELECT count(DISTINCT event_id) FROM inbox WHERE event_id = ANY($1)", event_ids)
        unsent = await conn.fetchval("SELECT count(*) FROM customer_emails WHERE status <> 'sent'")
    finally:
        await conn.close()
    return handled == len(event_ids) and unsent == 0


async def _messages(box: Mailbox, n: int):
    found = box.messages()
    return found if len(found) >= n else None
