"""Invoicing HTTP routes under /api/invoices: NovaBilling's paths and field names, plus the
Chargebee and ZevPay capabilities (see docs/invoicing.md for the mapping). `make_router` builds
them as closures over one InvoicingService, which service.py passes in."""

from datetime import date, datetime, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.datastructures import QueryParams

from shared import auth

from ...app import repository
from ...app.invoices import Invoicing
from .. import pdf
from ..listing import INVOICE_FILTERS, INVOICE_SORTS, run_list
from ..schemas import CreateInvoiceIn, ImportInvoiceIn, InvoiceFieldsIn, ItemIn, ReasonIn, RecordPaymentIn


def _list_params(params: QueryParams) -> QueryParams:
    """NovaBilling's dateFrom/dateTo (inclusive days) as createdAt operators."""
    items = [(k, v) for k, v in params.multi_items() if k not in ("dateFrom", "dateTo")]
    if v := params.get("dateFrom"):
        items.append(("createdAt[gte]", v))
    if v := params.get("dateTo"):
        try:
            items.append(("createdAt[lt]", (date.fromisoformat(v) + timedelta(days=1)).isoformat()))
        except (ValueError, OverflowError):
            items.append(("createdAt[lt]", v))  # reported as invalid by the filter
    return QueryParams(items)


async def invoice_page(pool, tenant: str, params: QueryParams) -> dict:
    """A page of GET /api/invoices (also GET /api/customers/{id}/invoices), with what dunning said."""
    async with pool.acquire() as conn:
        page = await run_list(
            conn,
            table="invoice_list",
            id_col="invoice_id",
            tenant=tenant,
            params=_list_params(params),
            filters=INVOICE_FILTERS,
            sortable=INVOICE_SORTS,
            default_sort="-createdAt",
            tombstones=True,
        )
        dunning = await repository.dunning_of(conn, [v["id"] for v in page["data"]])
    for v in page["data"]:
        repository.show_dunning(v, dunning)
    return page


def make_router(invoicing) -> APIRouter:
    """The routes over `invoicing` (the service's InvoicingService): its service and its handlers."""
    service = invoicing.service
    router = APIRouter(prefix="/api/invoices", tags=["invoices"])
    Tenant = Annotated[str, Depends(service.tenant)]
    App = Annotated[Invoicing, Depends(invoicing.handlers)]

    @router.post("", status_code=201)
    async def create_invoice(body: CreateInvoiceIn, tenant: Tenant, app: App) -> dict:
        """For `customerId`, or for `customer`: the tenant's oldest customer with that e-mail, or a
        new customer made from it (ZevPay's customer_name and customer_email)."""
        inline = body.customer.customer_fields() if body.customer else None
        return await app.create_invoice(tenant, body.customer_id, body.draft_fields(), customer=inline)

    @router.post("/import", status_code=201)
    async def import_invoice(body: ImportInvoiceIn, tenant: Tenant, app: App) -> dict:
        """A historical invoice, with its own number and outcome (Chargebee's import_invoice)."""
        return await app.import_invoice(
            tenant,
            body.customer_id,
            body.draft_fields(),
            number=body.number,
            issued_on=body.issued_on,
            status=body.status,
            amount_paid=body.amount_paid,
        )

    @router.get("")
    async def list_invoices(request: Request, tenant: Tenant) -> dict:
        return await invoice_page(service.pool, tenant, request.query_params)

    @router.get("/{invoice_id}")
    async def get_invoice(
        invoice_id: str, tenant: Tenant, app: App, as_of: Annotated[datetime | None, Query(alias="asOf")] = None
    ) -> dict:
        return await app.get(tenant, invoice_id, as_of)

    @router.patch("/{invoice_id}")
    async def update_invoice(invoice_id: str, body: InvoiceFieldsIn, tenant: Tenant, app: App) -> dict:
        return await app.update_invoice(tenant, invoice_id, body.customer_id, body.draft_fields())

    @router.delete("/{invoice_id}", status_code=204)
    async def delete_invoice(invoice_id: str, tenant: Tenant, app: App) -> Response:
        await app.delete(tenant, invoice_id)
        return Response(status_code=204)

    @router.get("/{invoice_id}/events")
    async def invoice_events(invoice_id: str, tenant: Tenant, app: App) -> dict:
        return {"data": await app.history(tenant, invoice_id)}

    @router.post("/{invoice_id}/charges")
    async def add_charge(invoice_id: str, body: ItemIn, tenant: Tenant, app: App) -> dict:
        """Add a charge to a draft collecting charges (Chargebee's pending invoice)."""
        return await app.add_charge(tenant, invoice_id, body.to_line())

    @router.post("/{invoice_id}/finalize")
    async def finalize(invoice_id: str, tenant: Tenant, app: App) -> dict:
        return await app.finalize(tenant, invoice_id)

    @router.post("/{invoice_id}/close")
    async def close(invoice_id: str, tenant: Tenant, app: App) -> dict:
        """Chargebee's close for a pending invoice: the same as finalize."""
        return await app.finalize(tenant, invoice_id)

    @router.post("/{invoice_id}/send")
    async def send(invoice_id: str, tenant: Tenant, app: App) -> dict:
        return await app.send(tenant, invoice_id)

    @router.post("/{invoice_id}/mark-paid")
    async def mark_paid(invoice_id: str, tenant: Tenant, app: App, body: RecordPaymentIn | None = None) -> dict:
        """Record an offline payment: the amount due by default, or part of it."""
        body = body or RecordPaymentIn()
        return await app.record_offline_payment(
            tenant, invoice_id, amount=body.amount, method=body.method, reference=body.reference, paid_on=body.date
        )

    @router.post("/{invoice_id}/record-payment")
    async def record_payment(invoice_id: str, body: RecordPaymentIn, tenant: Tenant, app: App) -> dict:
        """Chargebee's record_payment: the same as mark-paid."""
        return await app.record_offline_payment(
            tenant, invoice_id, amount=body.amount, method=body.method, reference=body.reference, paid_on=body.date
        )

    @router.post("/{invoice_id}/void")
    async def void(invoice_id: str, tenant: Tenant, app: App, body: ReasonIn | None = None) -> dict:
        return await app.void(tenant, invoice_id, (body or ReasonIn()).reason)

    @router.post("/{invoice_id}/write-off")
    async def write_off(invoice_id: str, tenant: Tenant, app: App, body: ReasonIn | None = None) -> dict:
        return await app.write_off(tenant, invoice_id, (body or ReasonIn()).reason)

    @router.get("/{invoice_id}/pdf")
    async def get_pdf_url(invoice_id: str, tenant: Tenant, app: App) -> dict:
        await app.get(tenant, invoice_id)  # 404 for another tenant's invoice
        return pdf.signed_url(tenant, invoice_id, service.settings)

    @router.get("/{invoice_id}/pdf/download", include_in_schema=False)
    async def download_pdf(invoice_id: str, tenant: str, expires: int, signature: str, app: App) -> Response:
        """The signed URL itself: no API key, the signature and expiry are the authorisation."""
        pdf.verify(tenant, invoice_id, expires, signature, service.settings)
        view = await app.get(tenant, invoice_id)
        seller = await auth.tenant_name(service.pool, tenant)
        body = await pdf.render(view, seller=seller or "")
        name = view["number"] or view["id"]
        # RFC 6266: an ASCII fallback, and the real name (any script) percent-encoded beside it.
        fallback = name.encode("ascii", "replace").decode().replace('"', "_")
        disposition = f"inline; filename=\"{fallback}.pdf\"; filename*=UTF-8''{quote(name, safe='')}.pdf"
        return Response(
            body, media_type="application/pdf", headers={"Content-Disposition": disposition, "Cache-Control": "private"}
        )

    return router
