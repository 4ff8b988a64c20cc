"""Payments' JSON API: payments and refunds, collect and checkout for an invoice, saved payment
methods, provider accounts, and provider webhooks in. `make_router(root)` builds the routes as
closures over a PaymentsService (services/payments/service.py); this module never imports it."""

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic.alias_generators import to_camel

from shared import auth
from shared.errors import Conflict, NotFound, Refused
from shared.idempotency import mark_committed
from shared.ids import new_id
from shared.limits import MAX_DATE, MIN_DATE
from shared.pages import Keyset, PageParams, fetch_page, page_params
from shared.query_params import declared_only

from ..app import accounts as accounts_mod
from ..app import repository as repo
from ..app.checkout import open_session
from ..app.handlers import Method
from ..app.webhooks_in import receive
from ..domain.collection import CLOSED
from ..domain.events import STATUSES
from ..providers.base import Instrument, ProviderError
from .schemas import (
    REFUND_REASON,
    CheckoutIn,
    CollectIn,
    PaymentMethodIn,
    ProviderAccountIn,
    ProviderAccountPatch,
    RefundIn,
)

PAYMENT_ORDER = Keyset("payment_list", sort="created_at", id="payment_id")
METHOD_ORDER = Keyset("payment_methods", sort="created_at", id="method_id")
ACCOUNT_ORDER = Keyset("provider_accounts", sort="created_at", id="account_id", desc=False)


def make_router(root) -> APIRouter:
    """Every route of the JSON API, in the order they always had (root: a PaymentsService)."""
    router = APIRouter(tags=["payments"])
    for add in (_payment_routes, _invoice_routes, _method_routes, _provider_routes, _webhook_routes):
        add(router, root)
    return router


def _list_dependencies(service) -> list:
    # A list refuses query parameters it does not declare (400 parameter_unknown), after the key is
    # checked (a 401 comes first; FastAPI runs the tenant dependency once per request).
    return [Depends(service.tenant), Depends(declared_only)]


# -- payments -------------------------------------------------------------------------------


def _payment_routes(router: APIRouter, root) -> None:
    service, payments, refunds = root.service, root.payments, root.refunds
    Tenant = Annotated[str, Depends(service.tenant)]  # the authenticated tenant id
    LIST = _list_dependencies(service)

    @router.get("/api/customers/{customer_id}/payments", dependencies=LIST)
    async def list_customer_payments(
        customer_id: str,
        tenant: Tenant,
        paging: Annotated[PageParams, Depends(page_params)],
        status: str | None = None,
    ) -> dict:
        """GET /api/payments?customerId=…. Payments knows a customer only by its payments: one it
        never charged has an empty list, not a 404 (NovaBilling's 404 would need invoicing's word)."""
        return await list_payments(tenant, paging, status, customer_id=customer_id)

    @router.get("/api/payments", dependencies=LIST)
    async def list_payments(
        tenant: Tenant,
        paging: Annotated[PageParams, Depends(page_params)],
        status: str | None = None,
        provider: str | None = None,
        invoice_id: Annotated[str | None, Query(alias="invoiceId")] = None,
        customer_id: Annotated[str | None, Query(alias="customerId")] = None,
        date_from: Annotated[date | None, Query(alias="dateFrom", ge=MIN_DATE, le=MAX_DATE)] = None,
        date_to: Annotated[date | None, Query(alias="dateTo", ge=MIN_DATE, le=MAX_DATE)] = None,
    ) -> dict:
        where, args = ["tenant_id = $1"], [tenant]

        def add(clause: str, value) -> None:
            args.append(value)
            where.append(clause.format(f"${len(args)}"))

        if status:
            if status.upper() not in STATUSES:
                raise Refused("parameter_invalid", f"status must be one of {', '.join(STATUSES)}.", field="status")
            add("status = {}", status.upper())
        if provider:
            add("provider = {}", provider)
        if invoice_id:
            add("invoice_id = {}", invoice_id)
        if customer_id:
            add("customer_id = {}", customer_id)
        if date_from:
            add("created_at >= {}", datetime.combine(date_from, time.min, UTC))
        if date_to:  # inclusive: the whole of that day
            add("created_at < {}", datetime.combine(date_to + timedelta(days=1), time.min, UTC))
        async with service.pool.acquire() as conn:
            rows, meta = await fetch_page(conn, PAYMENT_ORDER, " AND ".join(where), args, paging)
        return {"data": [auth.with_livemode(r["view"], tenant) for r in rows], "meta": meta}

    @router.get("/api/payments/{payment_id}")
    async def get_payment(payment_id: str, tenant: Tenant) -> dict:
        async with service.pool.acquire() as conn:
            state, _ = await payments.read(conn, payment_id, tenant)
        return auth.with_livemode(state.snapshot.dump(), tenant)

    @router.post("/api/payments/{payment_id}/refund", status_code=201)
    async def refund_payment(payment_id: str, body: RefundIn, tenant: Tenant, response: Response) -> dict:
        """201 with the refund once the provider made it; 202 `pending` when the provider did not
        answer in time (the refund is retried and payment.refunded follows)."""
        refund = await refunds.request(tenant, payment_id, body.amount, body.reason or REFUND_REASON)
        if refund["status"] == "pending":
            response.status_code = 202
        return refund


# -- invoices: collect now, hosted checkout ----------------------------------------------------


async def wait_for_invoice(
    pool, tenant: str, invoice_id: str, *, finalized: bool = False, timeout: float = 3.0
) -> None:
    """An invoice created a moment ago may still be on its way from billing.invoices: give it a
    few seconds before answering 404 (a client that creates, finalizes, then checks out at once).
    With `finalized`, wait the same way while it is still a draft here (its finalize may be on
    the way); a real draft is then refused by the caller."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (status := await repo.invoice_status(pool, tenant, invoice_id)) is None or (finalized and status == "DRAFT"):
        if asyncio.get_running_loop().time() > deadline:
            if status is None:
                raise NotFound("invoice", invoice_id)
            return
        await asyncio.sleep(0.05)


def _invoice_routes(router: APIRouter, root) -> None:
    service, payments = root.service, root.payments
    Tenant = Annotated[str, Depends(service.tenant)]  # the authenticated tenant id

    @router.post("/api/invoices/{invoice_id}/collect", status_code=201)
    async def collect(invoice_id: str, tenant: Tenant, body: CollectIn | None = None) -> dict:
        """Charge the customer's saved method now."""
        body = body or CollectIn()
        await wait_for_invoice(service.pool, tenant, invoice_id, finalized=True)
        async with service.pool.acquire() as conn, conn.transaction():
            inv = await payments.invoice(conn, tenant, invoice_id)
            if body.payment_method_id:
                method = await repo.attached_method(conn, tenant, body.payment_method_id)
                if method is None:
                    raise NotFound("payment method", body.payment_method_id)
            else:
                method = await repo.saved_method(conn, tenant, inv["customer_id"])
            if method is None:
                raise Conflict(
                    "payment_method_missing",
                    "The customer has no saved payment method; add one with "
                    "POST /api/payment-methods or send a checkout link.",
                )
            account = await payments.accounts.route(conn, tenant, inv["currency"], provider=method["provider"])
            state = await payments.start(
                conn,
                tenant,
                invoice_id,
                amount=body.amount,
                account=account,
                method=Method(method["type"], method_id=method["method_id"]),
                inline=True,
            )
        await payments.run_job(state.snapshot.id, claimed=True)  # at once; the worker retries if this does not finish
        async with service.pool.acquire() as conn:
            state, _ = await payments.read(conn, state.snapshot.id, tenant)
        return auth.with_livemode(state.snapshot.dump(), tenant)

    @router.post("/api/invoices/{invoice_id}/refund", status_code=201)
    async def refund_invoice(invoice_id: str, tenant: Tenant, response: Response, body: RefundIn | None = None) -> dict:
        """Refund `amount` (all that is left if omitted) across the invoice's payments, newest
        first: one refund per payment it takes money from. 202 if any is still pending."""
        body = body or RefundIn()
        await wait_for_invoice(service.pool, tenant, invoice_id)
        refunds = await root.refunds.refund_invoice(tenant, invoice_id, body.amount, body.reason or REFUND_REASON)
        if any(r["status"] == "pending" for r in refunds):
            response.status_code = 202
        return {
            "object": "invoice_refund",
            "livemode": auth.livemode(tenant),
            "invoiceId": invoice_id,
            "amount": sum(r["amount"] for r in refunds if r["status"] != "failed"),  # refunded or on its way
            "currency": refunds[0]["currency"],
            "refunds": refunds,
        }

    @router.post("/api/invoices/{invoice_id}/checkout", status_code=201)
    async def checkout(invoice_id: str, tenant: Tenant, body: CheckoutIn | None = None) -> dict:
        body = body or CheckoutIn()
        await wait_for_invoice(service.pool, tenant, invoice_id)
        async with service.pool.acquire() as conn, conn.transaction():
            inv = await payments.invoice(conn, tenant, invoice_id)
            account = await payments.accounts.route(
                conn, tenant, inv["currency"]
            )  # 409 no_provider: a link nobody can pay
            balance = await payments.balance(conn, inv)
            if inv["status"] in CLOSED:  # a draft gets its link: the page says so until it is finalized
                raise Conflict("invoice_not_payable", f"An invoice in status {inv['status']} cannot be paid.")
            return_url = body.return_url or (inv["snapshot"] or {}).get("returnUrl")
            session_id, token, expires = await open_session(
                conn, tenant, invoice_id, return_url, timedelta(hours=service.settings.checkout_ttl_hours)
            )
        return {
            "id": session_id,
            "object": "checkout_session",
            "livemode": auth.livemode(tenant),
            "invoiceId": invoice_id,
            "checkoutUrl": f"{service.settings.public_url.rstrip('/')}/pay/{token}",
            "expiresAt": expires.isoformat().replace("+00:00", "Z"),
            "returnUrl": return_url,
            "amountDue": balance.remaining,
            "currency": inv["currency"],
            "invoiceStatus": inv["status"],
            "provider": account.provider,  # the account the page routes to now (NovaBilling's field)
        }


# -- saved payment methods ----------------------------------------------------------------------


def _method_view(row) -> dict:
    return {
        "id": row["method_id"],
        "object": "payment_method",
        "livemode": auth.livemode(row["tenant_id"]),
        "customerId": row["customer_id"],
        "provider": row["provider"],
        "type": row["type"],
        "label": row["label"],
        "createdAt": row["created_at"].isoformat(),
    }


def _method_routes(router: APIRouter, root) -> None:
    service, payments = root.service, root.payments
    Tenant = Annotated[str, Depends(service.tenant)]  # the authenticated tenant id
    LIST = _list_dependencies(service)

    @router.post("/api/payment-methods", status_code=201)
    async def attach_method(body: PaymentMethodIn, tenant: Tenant) -> dict:
        accounts_mod.refuse_sandbox_in_live(tenant, body.provider)
        if body.provider == "sandbox":
            if not body.number:
                raise Refused("parameter_missing", "number (a sandbox test instrument) is required.", field="number")
            adapter = payments.accounts.adapter(accounts_mod.Account(accounts_mod.SANDBOX_DEFAULT, "sandbox"))
            try:
                saved = await adapter.save_method(body.customer_id, Instrument(body.type, body.number))
            except ProviderError as exc:
                raise Refused(exc.code, exc.message, field="number") from exc
            token, label = saved.token, saved.label
        else:
            if not body.token:
                raise Refused(
                    "parameter_missing", f"token (the {body.provider} method token) is required.", field="token"
                )
            token, label = body.token, body.label or f"{body.provider} {body.type}"
        async with service.pool.acquire() as conn, conn.transaction():
            row = await repo.insert_method(
                conn,
                new_id("pm"),
                tenant,
                body.customer_id,
                body.provider,
                body.type,
                label,
                payments.vault.encrypt(token),
            )
            await mark_committed(conn)  # with the method: a retry of the same Idempotency-Key never attaches a second
        return _method_view(row)

    @router.get("/api/payment-methods", dependencies=LIST)
    async def list_methods(
        tenant: Tenant,
        paging: Annotated[PageParams, Depends(page_params)],
        customer_id: Annotated[str | None, Query(alias="customerId")] = None,
    ) -> dict:
        """The attached methods, newest first: all the tenant's, or one customer's."""
        where, args = "tenant_id = $1 AND detached_at IS NULL", [tenant]
        if customer_id:
            where, args = f"{where} AND customer_id = $2", [tenant, customer_id]
        async with service.pool.acquire() as conn:
            rows, meta = await fetch_page(conn, METHOD_ORDER, where, args, paging)
        return {"data": [_method_view(r) for r in rows], "meta": meta}

    @router.delete("/api/payment-methods/{method_id}")
    async def detach_method(method_id: str, tenant: Tenant) -> dict:
        row = await repo.detach_method(service.pool, tenant, method_id)
        if row is None:
            raise NotFound("payment method", method_id)
        return {**_method_view(row), "detached": True}


# -- provider accounts ----------------------------------------------------------------------------


def _provider_routes(router: APIRouter, root) -> None:
    service, payments = root.service, root.payments
    Tenant = Annotated[str, Depends(service.tenant)]  # the authenticated tenant id
    LIST = _list_dependencies(service)

    @router.post("/api/payment-providers", status_code=201)
    async def add_provider(body: ProviderAccountIn, tenant: Tenant) -> dict:
        async with service.pool.acquire() as conn:
            return await payments.accounts.create(
                conn,
                tenant,
                body.provider,
                [c.upper() for c in body.currencies],
                body.priority,
                body.credentials,
                active=body.is_active,
            )

    @router.get("/api/payment-providers", dependencies=LIST)
    async def list_providers(tenant: Tenant, paging: Annotated[PageParams, Depends(page_params)]) -> dict:
        """The tenant's accounts, active or not, oldest first (routing's tie-break order)."""
        async with service.pool.acquire() as conn:
            rows, meta = await fetch_page(
                conn, ACCOUNT_ORDER, "tenant_id = $1 AND deleted_at IS NULL", [tenant], paging
            )
        return {"data": [accounts_mod.view(r) for r in rows], "meta": meta}

    @router.get("/api/payment-providers/{account_id}")
    async def get_provider(account_id: str, tenant: Tenant) -> dict:
        async with service.pool.acquire() as conn:
            return await payments.accounts.view_of(conn, tenant, account_id)

    @router.patch("/api/payment-providers/{account_id}")
    async def update_provider(account_id: str, body: ProviderAccountPatch, tenant: Tenant) -> dict:
        """An inactive account takes no new payments; the ones made through it still settle and refund."""
        changes = body.model_dump(exclude_unset=True)
        if not changes:
            raise Refused("parameter_missing", "Send at least one of currencies, priority, isActive, credentials.")
        if (null := next((name for name, value in changes.items() if value is None), None)) is not None:
            raise Refused("parameter_invalid", f"{to_camel(null)} cannot be null.", field=to_camel(null))
        if "currencies" in changes:
            changes["currencies"] = [c.upper() for c in changes["currencies"]]
        if "is_active" in changes:
            changes["active"] = changes.pop("is_active")
        async with service.pool.acquire() as conn:
            return await payments.accounts.update(conn, tenant, account_id, changes)

    @router.delete("/api/payment-providers/{account_id}")
    async def delete_provider(account_id: str, tenant: Tenant) -> dict:
        """Gone from routing and the API for good; its payments can still be refunded."""
        async with service.pool.acquire() as conn:
            return await payments.accounts.delete(conn, tenant, account_id)

    @router.post("/api/payment-providers/{account_id}/test")
    async def test_provider(account_id: str, tenant: Tenant) -> dict:
        """Checks the credentials against the provider (one authenticated read); `ok` says whether
        the provider took them, `error` what it said if not."""
        async with service.pool.acquire() as conn:
            return await payments.accounts.test(conn, tenant, account_id)


# -- provider webhooks in --------------------------------------------------------------------------


def _webhook_routes(router: APIRouter, root) -> None:
    payments = root.payments

    @router.post("/webhooks/{provider}", include_in_schema=False)
    async def provider_webhook(provider: str, request: Request) -> dict:
        """For installations with one account of the provider; otherwise use the account's path."""
        return await receive(payments, provider, *await _callback(request))

    @router.post("/webhooks/{provider}/{account_id}", include_in_schema=False)
    async def account_webhook(provider: str, account_id: str, request: Request) -> dict:
        """Checked against that one account's secret (`default`: the installation's sandbox)."""
        return await receive(payments, provider, *await _callback(request), segment=account_id)


async def _callback(request: Request) -> tuple[dict[str, str], bytes, dict[str, str]]:
    return {k.lower(): v for k, v in request.headers.items()}, await request.body(), dict(request.query_params)
