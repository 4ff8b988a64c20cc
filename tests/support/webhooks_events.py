"""Events shaped as docs/events.md describes them, for the webhooks tests (invoicing is not
needed to produce them)."""

from typing import Any

from shared.envelope import CloudEvent
from shared.ids import new_id


def invoice_snapshot(**overrides: Any) -> dict:
    invoice_id = overrides.pop("id", None) or new_id("inv")
    snapshot = {
        "id": invoice_id,
        "object": "invoice",
        "number": "INV-2026-000123",
        "status": "PENDING",
        "customerId": "cust_1",
        "customer": {"id": "cust_1", "name": "Nakato Achieng", "email": "nakato@example.com"},
        "currency": "UGX",
        "items": [{"description": "Website hosting", "quantity": 1, "unitAmount": 180000, "amount": 180000}],
        "subtotal": 180000,
        "discountTotal": 0,
        "taxTotal": 0,
        "total": 180000,
        "amount": 180000,
        "amountPaid": 0,
        "amountDue": 180000,
        "amountRefunded": 0,
        "creditsApplied": 0,
        "writeOffAmount": 0,
        "allowPartialPayments": True,
        "autoCollection": False,
        "dueDate": "2026-12-31",
        "finalizedAt": None,
        "sentAt": None,
        "paidAt": None,
        "voidedAt": None,
        "returnUrl": None,
        "reference": None,
        "metadata": {},
        "createdAt": "2026-11-01T10:00:00Z",
        "updatedAt": "2026-11-01T10:00:00Z",
    }
    snapshot.update(overrides)
    return snapshot


def event(
    type: str, tenant: str, subject: str, data: dict, *, sequence: int = 1, correlation_id: str | None = None
) -> CloudEvent:
    source = "/billstream/" + {"invoice": "invoicing", "payment": "payments", "dunning": "dunning"}.get(
        type.split(".")[0], "invoicing"
    )
    e = CloudEvent.new(
        type=type, source=source, subject=subject, tenant_id=tenant, data=data, correlation_id=correlation_id
    )
    return e.model_copy(update={"sequence": str(sequence)})


def invoice_event(type: str, tenant: str, invoice: dict, *, sequence: int = 1, **facts: Any) -> CloudEvent:
    return event(type, tenant, invoice["id"], {**facts, "invoice": invoice}, sequence=sequence)
