"""Which customer e-mail an event sends, and what it says. Pure: no I/O, no clock.

- invoice.sent: amount due, due date, "Pay now" link.
- invoice.payment_received that leaves a balance: amount paid, balance, "Pay the rest" link.
- invoice.paid: "View receipt" link (the pay link doubles as the receipt), PDF attached from the
  event's `pdfUrl` (or the invoice snapshot's).
- dunning.reminder_due: a reminder before or after the due date, from the invoice snapshot this
  service keeps (the dunning event carries only the invoice id).
"""

from dataclasses import dataclass
from typing import Any

from shared import paylinks
from shared.money import format_money

from .render import locale_or_default, long_date, render

EMAIL_EVENTS = ("invoice.sent", "invoice.payment_received", "invoice.paid", "dunning.reminder_due")
# No reminder for an invoice that no longer asks for money.
_SETTLED = {"DRAFT", "PAID", "VOID", "WRITTEN_OFF"}


@dataclass(frozen=True)
class EmailDraft:
    kind: str
    invoice_id: str
    recipient: str
    recipient_name: str | None
    subject: str
    text: str
    html: str
    attachment_url: str | None = None
    attachment_name: str | None = None


def pay_url(
    data: dict[str, Any], invoice: dict[str, Any], public_url: str, pay_link_secret: str = paylinks.DEV_SECRET
) -> str:
    """The payments service's link if an event carries one, else a signed link to its hosted page
    for the invoice (shared/paylinks.py)."""
    for source in (data, invoice):
        for key in ("paymentUrl", "hostedUrl", "checkoutUrl"):
            if source.get(key):
                return str(source[key])
    return public_url.rstrip("/") + paylinks.path(pay_link_secret, invoice["id"])


def _adjusted(invoice: dict[str, Any]) -> bool:
    return bool(invoice.get("discountTotal") or invoice.get("taxTotal"))


def _lines(invoice: dict[str, Any], fmt, spec: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [(label, fmt(invoice.get(key)), sign) for label, key, sign in spec if invoice.get(key)]


def kind_for(event_type: str, data: dict[str, Any]) -> str | None:
    if event_type == "invoice.sent":
        return "invoice_sent"
    if event_type == "invoice.payment_received":
        # The full payment's e-mail is invoice.paid's receipt; this one is only for a balance left.
        return None if data.get("isFullyPaid") else "payment_partial"
    if event_type == "invoice.paid":
        return "invoice_paid"
    if event_type == "dunning.reminder_due":
        return "reminder"
    return None


def compose(
    event_type: str,
    data: dict[str, Any],
    invoice: dict[str, Any] | None,
    *,
    business: str,
    public_url: str,
    default_locale: str,
    pay_link_secret: str = paylinks.DEV_SECRET,
) -> EmailDraft | None:
    """The e-mail this event sends, or None (not an e-mail event, no customer address, settled)."""
    kind = kind_for(event_type, data)
    if kind is None or not invoice:
        return None
    customer = invoice.get("customer") or {}
    if not customer.get("email"):
        return None
    if kind == "reminder" and (invoice.get("status") in _SETTLED or not invoice.get("amountDue")):
        return None
    locale = locale_or_default(customer.get("locale") or invoice.get("locale"), default_locale)
    currency = invoice["currency"]

    def fmt(amount: int | None) -> str:
        return format_money(amount or 0, currency, locale)

    link = pay_url(data, invoice, public_url, pay_link_secret)
    pdf = data.get("pdfUrl") or invoice.get("pdfUrl")
    context = {
        "kind": kind,
        "business": business,
        "customer_name": customer.get("name") or "",
        "number": invoice.get("number") or invoice["id"],
        "currency": currency,
        "total": fmt(invoice.get("total")),
        "amount_due": fmt(invoice.get("amountDue")),
        # Shown only when non-zero, so the lines on the page add up to the total and the amount due.
        "before_total": _lines(
            invoice, fmt, [("Subtotal", "subtotal", ""), ("Discount", "discountTotal", "-"), ("Tax", "taxTotal", "")]
        )
        if _adjusted(invoice)
        else [],
        "after_total": _lines(
            invoice, fmt, [("Credits applied", "creditsApplied", "-"), ("Already paid", "amountPaid", "-")]
        ),
        "amount_paid_total": fmt(invoice.get("amountPaid")),
        "due_date": long_date(invoice.get("dueDate"), locale),
        "pay_url": link,
        "receipt_url": link,
        "items": [
            {"description": i.get("description", ""), "quantity": i.get("quantity", 1), "amount": fmt(i.get("amount"))}
            for i in invoice.get("items") or []
        ],
        "payment_amount": fmt(data.get("amount")),
        "balance": fmt(data.get("amountDue", invoice.get("amountDue"))),
        "paid_date": long_date(data.get("paidAt") or invoice.get("paidAt"), locale),
        "reminder_kind": data.get("kind"),
        "days": data.get("days"),
        "has_pdf": bool(pdf),
    }
    subject, text, html = render(kind, context)
    attachment = pdf if kind == "invoice_paid" else None
    return EmailDraft(
        kind=kind,
        invoice_id=invoice["id"],
        recipient=customer["email"],
        recipient_name=customer.get("name"),
        subject=subject,
        text=text,
        html=html,
        attachment_url=attachment,
        attachment_name=f"{context['number']}.pdf" if attachment else None,
    )
