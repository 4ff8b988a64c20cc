"""Customers and credit notes (invoicing owns both). `make_router` builds the routes as closures
over one InvoicingService, which service.py passes in."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.datastructures import QueryParams

from shared import auth
from shared.errors import NotFound
from shared.limits import bounded_int
from shared.money import check_currency

from ...app import repository
from ...app.invoices import Invoicing
from ...domain.invoice import CREDIT_NOTE_REASONS
from ..listing import Column, one_of, parse_time, run_list
from ..schemas import CreateCreditNoteIn, CreateCustomerIn, CustomerFieldsIn
from .invoices import invoice_page

CREATED = {"createdAt": Column("created_at", parse_time)}
CREDIT_NOTE_FILTERS = {
    **CREATED,
    "invoiceId": Column("invoice_id", str),
    "customerId": Column("customer_id", str),
    "type": Column("type", one_of(("adjustment", "refund"), case=str.lower)),
    "status": Column("status", one_of(("adjusted", "refunded", "voided"), case=str.lower)),
    "reasonCode": Column("reason_code", one_of(("write_off", "refund", *CREDIT_NOTE_REASONS), case=str.lower)),
    "currency": Column("currency", check_currency),
    "amount": Column("amount", bounded_int),
}


def make_router(invoicing) -> APIRouter:
    """The routes over `invoicing` (the service's InvoicingService): its service and its handlers."""
    service = invoicing.service
    router = APIRouter(prefix="/api", tags=["customers"])
    Tenant = Annotated[str, Depends(service.tenant)]
    App = Annotated[Invoicing, Depends(invoicing.handlers)]

    @router.post("/customers", status_code=201)
    async def create_customer(body: CreateCustomerIn, tenant: Tenant, app: App) -> dict:
        return await app.create_customer(tenant, body.customer_fields())

    @router.get("/customers")
    async def list_customers(request: Request, tenant: Tenant) -> dict:
        async with service.pool.acquire() as conn:
            return await run_list(
                conn,
                table="customer_list",
                id_col="customer_id",
                tenant=tenant,
                params=request.query_params,
                filters={
                    "email": Column("email", str.lower),
                    "externalId": Column("external_id", str),
                    "country": Column("country", str.upper),
                    "currency": Column("currency", str.upper),
                },
                sortable={**CREATED, "name": Column("name", str)},
                default_sort="-createdAt",
                tombstones=True,
            )

    @router.get("/customers/{customer_id}")
    async def get_customer(customer_id: str, tenant: Tenant, app: App) -> dict:
        return await app.get_customer(tenant, customer_id)

    @router.patch("/customers/{customer_id}")
    async def update_customer(customer_id: str, body: CustomerFieldsIn, tenant: Tenant, app: App) -> dict:
        return await app.update_customer(tenant, customer_id, body.customer_fields())

    @router.delete("/customers/{customer_id}", status_code=204)
    async def delete_customer(customer_id: str, tenant: Tenant, app: App) -> Response:
        """Refused (409 customer_has_open_invoices) while any of its invoices is a draft or unpaid."""
        await app.delete_customer(tenant, customer_id)
        return Response(status_code=204)

    @router.get("/customers/{customer_id}/invoices")
    async def list_customer_invoices(customer_id: str, request: Request, tenant: Tenant, app: App) -> dict:
        """GET /api/invoices?customerId=…, with its filters, for a customer that exists."""
        await app.get_customer(tenant, customer_id)  # 404 otherwise
        params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("customerId", "customer_id")]
        return await invoice_page(service.pool, tenant, QueryParams([*params, ("customerId", customer_id)]))

    @router.post("/credit-notes", status_code=201)
    async def create_credit_note(body: CreateCreditNoteIn, tenant: Tenant, app: App) -> dict:
        """An adjustment credit note (reasonCode required): the invoice's amount due drops by
        `amount`; the whole amount due makes it PAID."""
        return await app.create_credit_note(
            tenant, body.invoice_id, amount=body.amount, reason_code=body.reason_code, reason=body.reason
        )

    @router.post("/credit-notes/{credit_note_id}/void")
    async def void_credit_note(credit_note_id: str, tenant: Tenant, app: App) -> dict:
        """A note made by hand, while its invoice still has money due: the amount is due again."""
        return await app.void_credit_note(tenant, credit_note_id)

    @router.get("/credit-notes")
    async def list_credit_notes(request: Request, tenant: Tenant) -> dict:
        async with service.pool.acquire() as conn:
            return await run_list(
                conn,
                table="credit_notes",
                id_col="credit_note_id",
                tenant=tenant,
                params=request.query_params,
                filters=CREDIT_NOTE_FILTERS,
                sortable={**CREATED, "amount": Column("amount", bounded_int)},
                default_sort="-createdAt",
                search_col=None,
            )

    @router.get("/credit-notes/{credit_note_id}")
    async def get_credit_note(credit_note_id: str, tenant: Tenant) -> dict:
        view = await repository.credit_note(service.pool, tenant, credit_note_id)
        if view is None:
            raise NotFound("credit note", credit_note_id)
        return auth.with_livemode(view, tenant)

    return router
