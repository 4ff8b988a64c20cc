"""The hosted payment page, /pay/{token}: server-rendered HTML (jinja2), no JavaScript needed.

GET shows the invoice (business, lines, totals, paid, remaining, due date) and a form for the
sandbox's test instruments; POST starts a payment and redirects to its status page, which
refreshes until the provider settles it, then returns the customer to returnUrl
(?status=success&invoice=<id>) or back to the page, which after full payment is a receipt.

`make_router(root)` builds the routes as closures over a PaymentsService
(services/payments/service.py); this module never imports it.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from shared import auth, paylinks
from shared.errors import Refused
from shared.logs import get_logger
from shared.money import format_money

from ..app import repository as repo
from ..app.checkout import session_for_link
from ..app.handlers import Method, Payments
from ..domain import money
from ..providers.base import Instrument, ProviderError
from ..providers.factory import ON_OUR_PAGE
from ..providers.mpesa import msisdn
from ..providers.sandbox import normalise

log = get_logger(__name__)
templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent.parent / "templates"), autoescape=select_autoescape(["html"])
)
templates.filters["money"] = lambda amount, currency: format_money(int(amount), currency)

CLOSED = {
    "DRAFT": "This invoice is still a draft and cannot be paid yet.",
    "VOID": "This invoice has been voided and no longer needs to be paid.",
    "WRITTEN_OFF": "This invoice has been written off and no longer needs to be paid.",
    "UNCOLLECTIBLE": "This invoice is closed for online payment. Please contact the business.",
    "DELETED": "This invoice no longer exists.",
}


def page(template: str, http_status: int = 200, **context) -> HTMLResponse:
    return HTMLResponse(templates.get_template(template).render(**context), http_status)


def with_params(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


async def _load(conn, token: str):
    session = await repo.checkout_session(conn, token)
    if session is None:
        return (
            None,
            None,
            page(
                "message.html",
                404,
                title="Payment link not found",
                message="This payment link does not exist. Please ask the business for a new one.",
            ),
        )
    if session["expires_at"] < datetime.now(UTC):
        return (
            None,
            None,
            page(
                "message.html",
                410,
                title="Payment link expired",
                message="This payment link has expired. Please ask the business for a new one.",
            ),
        )
    inv = await repo.find_payable_invoice(conn, session["tenant_id"], session["invoice_id"])
    return session, inv, None


async def _context(payments: Payments, conn, session, inv) -> dict:
    snap = inv["snapshot"] or {}
    business = await auth.tenant_name(conn, session["tenant_id"])
    balance = await payments.balance(conn, inv)
    ours = await repo.invoice_payments(conn, inv["invoice_id"])
    return {
        "token": session["token"],
        "business": business or "Billstream",
        "invoice": snap,
        "invoice_id": inv["invoice_id"],
        "number": snap.get("number") or inv["invoice_id"],
        "status": inv["status"],
        "currency": inv["currency"],
        "items": snap.get("items") or [],
        "subtotal": snap.get("subtotal", inv["total"]),
        "tax_total": snap.get("taxTotal", 0),
        "discount_total": snap.get("discountTotal", 0),
        "total": inv["total"],
        "paid": balance.paid,
        "remaining": balance.remaining,
        "due_date": snap.get("dueDate"),
        "allow_partial": balance.allow_partial,
        "remaining_text": money.to_major_text(balance.remaining, inv["currency"]),
        "in_flight": [p for p in ours if p["status"] in ("PENDING", "PROCESSING")],
        "succeeded": [p for p in ours if p["status"] not in ("PENDING", "PROCESSING", "FAILED")],
        "closed": CLOSED.get(inv["status"]),
        "provider": await _provider(payments, conn, session["tenant_id"], inv["currency"]),
    }


async def _provider(payments: Payments, conn, tenant_id: str, currency: str) -> str | None:
    try:
        return (await payments.accounts.route(conn, tenant_id, currency)).provider
    except Refused:
        return None  # nothing configured for this currency: the page says so


# The only messages `?error=` can put on the page: a link cannot make a trusted page say anything else.
ERROR_CODES = {
    "payment_failed": "The payment did not go through. Please try again or use another method.",
    "payment_canceled": "The payment was canceled. You can try again.",
}


def make_router(root) -> APIRouter:
    """The hosted payment page's routes (root: a PaymentsService)."""
    service, payments = root.service, root.payments
    router = APIRouter(include_in_schema=False)

    @router.get("/pay/invoice/{invoice_id}")
    async def from_link(invoice_id: str, sig: str = ""):
        """A signed pay link from a customer e-mail (shared/paylinks.py): on to a checkout session."""
        if (problem := paylinks.problem(service.settings.pay_link_secret, invoice_id, sig)) == "expired":
            return page(
                "message.html",
                410,
                title="Payment link expired",
                message="This payment link has expired. Please ask the sender for a new invoice e-mail.",
            )
        if problem:
            return page(
                "message.html",
                404,
                title="Payment link not found",
                message="This payment link is not valid. Please use the link in your e-mail.",
            )
        async with service.pool.acquire() as conn, conn.transaction():
            inv = await repo.invoice_for_link(conn, invoice_id)
            if inv is None:
                return page(
                    "message.html",
                    404,
                    title="Invoice not available",
                    message="This invoice is not available yet. Please try again in a moment.",
                )
            token = await session_for_link(
                conn,
                inv["tenant_id"],
                invoice_id,
                (inv["snapshot"] or {}).get("returnUrl"),
                timedelta(hours=service.settings.checkout_ttl_hours),
            )
        return RedirectResponse(f"/pay/{token}", 303)

    @router.get("/pay/{token}", response_class=HTMLResponse)
    async def show(token: str, error: str | None = None) -> HTMLResponse:
        return await _render(token, ERROR_CODES.get(error or ""))

    async def _render(token: str, error: str | None) -> HTMLResponse:
        async with service.pool.acquire() as conn:
            session, inv, problem = await _load(conn, token)
            if problem:
                return problem
            if inv is None:
                return page(
                    "message.html",
                    404,
                    title="Invoice not available",
                    message="This invoice is not available yet. Please try again in a moment.",
                )
            ctx = await _context(payments, conn, session, inv)
        # While the last of the balance is being processed, refresh until it settles.
        return page("pay.html", 200, error=error, refresh=ctx["remaining"] <= 0 and bool(ctx["in_flight"]), **ctx)

    @router.post("/pay/{token}")
    async def pay(token: str, request: Request):
        try:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()}
        except UnicodeDecodeError:
            return page(
                "message.html",
                400,
                title="Form not readable",
                message="The form could not be read. Please go back and submit it again.",
            )
        async with service.pool.acquire() as conn:
            session, inv, problem = await _load(conn, token)
            if problem:
                return problem
            if inv is None:
                return RedirectResponse(f"/pay/{token}", 303)
        kind = form.get("method", "card")
        number = form.get("mobile_number" if kind == "mobile_money" else "card_number", "")
        try:
            amount = money.to_minor(form["amount"], inv["currency"]) if form.get("amount") else None
            async with service.pool.acquire() as conn, conn.transaction():
                account = await payments.accounts.route(conn, session["tenant_id"], inv["currency"])
                # The sandbox (test instruments) and M-Pesa (a phone number) take their instruments
                # here; the other providers on their own page. A mistyped number is answered on
                # the page, before any payment exists.
                if account.provider == "sandbox":
                    method = Method(kind, instrument=normalise(Instrument(kind, number)))
                elif account.provider in ON_OUR_PAGE:
                    if kind not in ON_OUR_PAGE[account.provider]:
                        raise Refused("method_not_supported", f"Pay by {' or '.join(ON_OUR_PAGE[account.provider])}.")
                    method = Method(kind, instrument=Instrument(kind, msisdn(number)))
                else:
                    method = Method("hosted")
                back = f"{service.settings.public_url.rstrip('/')}/pay/{token}/payments/{{payment_id}}"
                state = await payments.start(
                    conn,
                    session["tenant_id"],
                    inv["invoice_id"],
                    amount=amount,
                    account=account,
                    method=method,
                    return_url=back,
                    inline=True,
                )
        except ProviderError as exc:
            return await _again(token, exc.message)
        except ValueError:
            return await _again(token, "Enter the amount as a number, for example 1250.50, and no more than is due.")
        except Refused as exc:
            return await _again(token, exc.message)
        result = await payments.run_job(state.snapshot.id, claimed=True)
        if result is not None and result.redirect_url:  # a provider with its own hosted form
            return RedirectResponse(result.redirect_url, 303)
        return RedirectResponse(f"/pay/{token}/payments/{state.snapshot.id}", 303)

    async def _again(token: str, error: str) -> HTMLResponse:
        response = await _render(token, error)
        response.status_code = 400
        return response

    @router.get("/pay/{token}/payments/{payment_id}")
    async def payment_status(token: str, payment_id: str):
        async with service.pool.acquire() as conn:
            session, inv, problem = await _load(conn, token)
            if problem:
                return problem
            try:
                state, _tenant = await payments.read(conn, payment_id, session["tenant_id"])
            except Refused:
                state = None
            if state is None or state.snapshot.invoice_id != session["invoice_id"]:
                return page("message.html", 404, title="Payment not found", message="This payment does not exist.")
            ctx = await _context(payments, conn, session, inv)
        s = state.snapshot
        if s.status in ("PENDING", "PROCESSING"):
            return page("status.html", 200, refresh=True, payment=s.dump(), **ctx)
        if s.status == "FAILED":
            return page("status.html", 200, refresh=False, payment=s.dump(), **ctx)
        if session["return_url"] and urlsplit(session["return_url"]).scheme in ("http", "https"):
            return RedirectResponse(with_params(session["return_url"], status="success", invoice=s.invoice_id), 303)
        return RedirectResponse(f"/pay/{token}", 303)

    return router
