"""Customer e-mails without servers: which event sends what, money and dates for the locale,
escaping, and the MIME message the mailer builds."""

import email
import email.policy
import re

import pytest
from itsdangerous import BadSignature, TimestampSigner

from services.webhooks.app.emails.compose import compose, kind_for, pay_url
from services.webhooks.app.emails.mailer import build_message
from services.webhooks.app.emails.render import locale_or_default, long_date
from shared.money import format_money
from tests.support.webhooks_events import invoice_snapshot

KW = dict(business="Acme", public_url="https://billing.example.com/", default_locale="en")


def signed_for(secret: str, invoice_id: str, token: str) -> bool:
    """A pay link token checked as shared/paylinks documents it, without its code: itsdangerous'
    TimestampSigner, salt "pay-link", over the invoice id, good for 90 days."""
    try:
        TimestampSigner(secret, salt="pay-link").unsign(f"{invoice_id}.{token}", max_age=90 * 24 * 3600)
    except BadSignature:
        return False
    return True


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        (180000, "UGX", "en", "UGX180,000"),
        (4407500, "NGN", "en_NG", "₦44,075.00"),
        (1500, "KWD", "en", "KWD1.500"),
        (1999, "USD", "en", "$19.99"),
        (1999, "EUR", "de_DE", "19,99\xa0€"),
        (0, "USD", "en", "$0.00"),
    ],
)
def test_money_uses_the_currency_exponent_and_the_locale(amount, currency, locale, expected):
    assert format_money(amount, currency, locale) == expected


def test_locale_and_dates():
    assert locale_or_default("fr-FR", "en") == "fr_FR"
    assert locale_or_default("xx_nonsense", "en_NG") == "en_NG"
    assert locale_or_default(None, "") == "en"
    assert long_date("2026-12-31", "en") == "December 31, 2026"
    assert long_date("2026-11-22T15:30:00Z", "fr") == "22 novembre 2026"
    assert long_date(None, "en") is None


@pytest.mark.parametrize(
    ("event_type", "data", "kind"),
    [
        ("invoice.sent", {}, "invoice_sent"),
        ("invoice.payment_received", {"isPartial": True, "isFullyPaid": False}, "payment_partial"),
        ("invoice.payment_received", {"isPartial": False, "isFullyPaid": True}, None),  # invoice.paid e-mails
        ("invoice.paid", {}, "invoice_paid"),
        ("dunning.reminder_due", {}, "reminder"),
        ("invoice.created", {}, None),
        ("payment.succeeded", {}, None),
    ],
)
def test_which_events_send_which_email(event_type, data, kind):
    assert kind_for(event_type, data) == kind


def test_pay_link_prefers_a_url_from_the_event_then_a_signed_link_to_the_hosted_page():
    inv = invoice_snapshot(id="inv_9")
    url = pay_url({}, inv, "https://b.example/", "s3cret")
    assert url.startswith("https://b.example/pay/invoice/inv_9?sig=")
    assert signed_for("s3cret", "inv_9", url.rpartition("=")[2])
    assert not signed_for("other", "inv_9", url.rpartition("=")[2])
    assert not signed_for("s3cret", "inv_8", url.rpartition("=")[2])
    assert pay_url({}, {**inv, "paymentUrl": "https://p/x"}, "https://b.example") == "https://p/x"
    assert pay_url({"checkoutUrl": "https://p/c"}, inv, "https://b.example") == "https://p/c"


def test_invoice_sent_has_amount_due_due_date_and_pay_link_with_names_escaped():
    inv = invoice_snapshot(id="inv_1", customer={"id": "c", "name": "Tom & <Jerry>", "email": "t@example.com"})
    draft = compose("invoice.sent", {"invoice": inv}, inv, **KW)
    assert draft.kind == "invoice_sent" and draft.recipient == "t@example.com" and draft.invoice_id == "inv_1"
    assert draft.subject == "Invoice INV-2026-000123 from Acme: UGX180,000 due by December 31, 2026"
    assert "Amount due: UGX180,000" in draft.text and "https://billing.example.com/pay/invoice/inv_1?sig=" in draft.text
    assert "Tom &amp; &lt;Jerry&gt;" in draft.html and "<Jerry>" not in draft.html
    assert draft.attachment_url is None


def test_partial_payment_shows_amount_paid_and_balance():
    inv = invoice_snapshot(
        currency="NGN",
        total=4407500,
        amountPaid=1000000,
        amountDue=3407500,
        customer={"id": "c", "name": "Chidi", "email": "c@example.com", "locale": "en_NG"},
    )
    data = {
        "invoice": inv,
        "amount": 1000000,
        "isPartial": True,
        "isFullyPaid": False,
        "amountPaid": 1000000,
        "amountDue": 3407500,
    }
    draft = compose("invoice.payment_received", data, inv, **KW)
    assert draft.subject == "Payment of ₦10,000.00 received for invoice INV-2026-000123: ₦34,075.00 remaining"
    assert "Balance remaining: ₦34,075.00" in draft.text and "Pay remaining balance" in draft.html


def test_paid_in_full_links_the_receipt_and_attaches_the_pdf_when_there_is_one():
    inv = invoice_snapshot(status="PAID", amountPaid=180000, amountDue=0, paidAt="2026-11-22T15:30:00Z")
    draft = compose("invoice.paid", {"invoice": inv, "paidAt": inv["paidAt"]}, inv, **KW)
    assert draft.attachment_url is None and "attached" not in draft.text
    with_pdf = {**inv, "pdfUrl": "https://files.example/inv.pdf?sig=1"}
    draft = compose("invoice.paid", {"invoice": with_pdf}, with_pdf, **KW)
    assert draft.attachment_url == with_pdf["pdfUrl"] and draft.attachment_name == "INV-2026-000123.pdf"
    assert "View your receipt: https://billing.example.com/pay/" in draft.text and "attached" in draft.text


def test_reminders_before_and_after_the_due_date_and_none_once_settled():
    inv = invoice_snapshot(status="OVERDUE")
    after = compose("dunning.reminder_due", {"kind": "after_due", "days": 1}, inv, **KW)
    assert after.subject.startswith("Overdue:") and "(1 day ago)" in after.text
    before = compose("dunning.reminder_due", {"kind": "before_due", "days": 3}, inv, **KW)
    assert before.subject.startswith("Reminder:") and "(in 3 days)" in before.text
    for settled in ({**inv, "status": "PAID"}, {**inv, "status": "VOID"}, {**inv, "amountDue": 0}):
        assert compose("dunning.reminder_due", {"kind": "after_due", "days": 1}, settled, **KW) is None
    assert compose("dunning.reminder_due", {"kind": "after_due"}, None, **KW) is None


def test_no_email_without_a_customer_address():
    inv = invoice_snapshot(customer={"id": "c", "name": "No Mail", "email": None})
    assert compose("invoice.sent", {"invoice": inv}, inv, **KW) is None


def test_the_message_has_text_html_and_the_pdf():
    row = {
        "subject": "Receipt",
        "sender": '"Acme & Co" <billing@example.com>',
        "recipient": "c@example.com",
        "email_id": "eml_1",
        "event_id": "evt_1",
        "text_body": "Paid, thank you.",
        "html_body": "<p>Paid, thank you.</p>",
        "attachment_name": "INV-1.pdf",
    }
    raw = build_message(row, b"%PDF-1.4 test").as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Message-ID"] == "<eml_1@billstream>" and parsed["Date"]
    assert parsed.get_body(("plain",)).get_content().strip() == "Paid, thank you."
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Paid, thank you.</p>"
    [pdf] = list(parsed.iter_attachments())
    assert pdf.get_filename() == "INV-1.pdf" and pdf.get_content() == b"%PDF-1.4 test"


def test_discount_tax_and_payments_so_far_add_up_on_the_invoice_email():
    inv = invoice_snapshot(
        id="inv_7",
        subtotal=365000,
        discountTotal=1500,
        taxTotal=64622,
        total=428122,
        amountPaid=100000,
        amountDue=328122,
    )
    draft = compose("invoice.sent", {"invoice": inv}, inv, **{**KW, "pay_link_secret": "s3cret"})
    lines = [line for line in draft.text.splitlines() if ":" in line]
    assert lines[lines.index("Subtotal: UGX365,000") :][:6] == [
        "Subtotal: UGX365,000",
        "Discount: -UGX1,500",
        "Tax: UGX64,622",
        "Total: UGX428,122",
        "Already paid: -UGX100,000",
        "Amount due: UGX328,122",
    ]
    [token] = re.findall(r"Pay now: https://billing\.example\.com/pay/invoice/inv_7\?sig=([\w.-]+)\n", draft.text)
    assert signed_for("s3cret", "inv_7", token)
    plain = compose("invoice.sent", {"invoice": invoice_snapshot()}, invoice_snapshot(), **KW)
    assert "Subtotal" not in plain.text and "Already paid" not in plain.text
