"""The invoice as the public API shows it (camelCase JSON). One function, used by the HTTP
routes and by the list projection, so both always agree."""

from datetime import datetime

from ..domain.invoice import Invoice


def invoice_view(inv: Invoice, *, created_at: datetime, updated_at: datetime) -> dict:
    return {
        "id": inv.id,
        "object": "invoice",
        "customerId": inv.customer_id,
        "status": inv.status,
        "currency": inv.currency,
        "dueDate": inv.due_date.isoformat() if inv.due_date else None,
        "items": [i.dump() for i in inv.items],
        "subtotal": inv.subtotal,
        "total": inv.total,
        "amount": inv.total,  # NovaBilling's name for the invoice total
        "amountPaid": inv.amount_paid,
        "amountDue": inv.amount_due,
        "metadata": inv.metadata,
        "createdAt": created_at.isoformat(),
        "updatedAt": updated_at.isoformat(),
    }
