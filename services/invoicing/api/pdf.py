"""Invoice PDFs: an HTML template (jinja2) rendered by WeasyPrint, behind a signed link that
expires (signed over tenant, invoice and expiry with the rotating key list, shared/signing.py),
so it can be handed to a browser."""

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from shared import signing
from shared.errors import Forbidden, Gone
from shared.money import format_money

from ..settings import Settings

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parents[1] / "templates"), autoescape=select_autoescape(["html"])
)


def _message(tenant: str, invoice_id: str, expires: int) -> str:
    return f"{tenant}:{invoice_id}:{expires}"


def signed_url(
    tenant: str, invoice_id: str, settings: Settings, now: float | None = None, ttl_s: int | None = None
) -> dict:
    expires = int(now if now is not None else time.time()) + (ttl_s or settings.pdf_url_ttl_s)
    sig = signing.sign(settings.pdf_signing_secret, "invoice-pdf", _message(tenant, invoice_id, expires))
    url = (
        f"{settings.public_url.rstrip('/')}/api/invoices/{invoice_id}/pdf/download"
        f"?tenant={tenant}&expires={expires}&signature={sig}"
    )
    return {"url": url, "expiresAt": datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")}


def verify(tenant: str, invoice_id: str, expires: int, signature: str, settings: Settings) -> None:
    if not signing.verify(settings.pdf_signing_secret, "invoice-pdf", _message(tenant, invoice_id, expires), signature):
        raise Forbidden("signature_invalid", "This PDF link is not valid.")
    if expires < time.time():
        raise Gone("link_expired", "This PDF link has expired; ask for a new one.")


def render_html(view: dict, *, seller: str) -> str:
    cur = view["currency"]

    def money(amount: int) -> str:
        return format_money(amount, cur)

    return TEMPLATES.get_template("invoice.html").render(inv=view, seller=seller, money=money)


async def render(view: dict, *, seller: str) -> bytes:
    from weasyprint import HTML  # heavy import, only where PDFs are made

    html = render_html(view, seller=seller)
    return await asyncio.to_thread(lambda: HTML(string=html).write_pdf())
