"""Invoicing HTTP routes under /api/invoices (NovaBilling's paths and field names)."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from shared.ids import new_id

from ..app.handlers import InvoiceHandlers
from ..domain.invoice import CreateDraft, ItemInput
from ..service import service
from .schemas import CreateInvoiceIn

router = APIRouter(prefix="/api/invoices", tags=["invoices"])
Tenant = Annotated[str, Depends(service.tenant)]


def handlers() -> InvoiceHandlers:
    return InvoiceHandlers(service.pool, service.store)


@router.post("", status_code=201)
async def create_invoice(body: CreateInvoiceIn, tenant: Tenant) -> dict:
    cmd = CreateDraft(
        invoice_id=new_id("inv"), customer_id=body.customer_id, currency=body.currency,
        due_date=body.due_date, metadata=body.metadata,
        items=tuple(ItemInput(i.description, i.quantity, i.unit_amount) for i in body.items),
    )
    return await handlers().create_draft(tenant, cmd)


@router.get("")
async def list_invoices(
    tenant: Tenant,
    status: str | None = None,
    customer_id: Annotated[str | None, Query(alias="customerId")] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    where, args = ["tenant_id = $1"], [tenant]
    if status:
        args.append(status.upper())
        where.append(f"status = ${len(args)}")
    if customer_id:
        args.append(customer_id)
        where.append(f"customer_id = ${len(args)}")
    sql_where = " AND ".join(where)
    async with service.pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM invoice_list WHERE {sql_where}", *args)
        rows = await conn.fetch(
            f"""SELECT view FROM invoice_list WHERE {sql_where}
                ORDER BY created_at DESC, invoice_id DESC LIMIT {limit} OFFSET {(page - 1) * limit}""",
            *args,
        )
    return {
        "data": [r["view"] for r in rows],
        "meta": {"page": page, "limit": limit, "total": total, "totalPages": -(-total // limit)},
    }


@router.get("/{invoice_id}")
async def get_invoice(
    invoice_id: str, tenant: Tenant, as_of: Annotated[datetime | None, Query(alias="asOf")] = None
) -> dict:
    return await handlers().get(tenant, invoice_id, as_of)


@router.get("/{invoice_id}/events")
async def invoice_events(invoice_id: str, tenant: Tenant) -> dict:
    return {"data": await handlers().history(tenant, invoice_id)}
