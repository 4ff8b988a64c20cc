"""Resources as the public API and the events show them (camelCase JSON). The same functions
build HTTP answers and event snapshots, so the two always agree. Each takes the world id the
resource lives in, for its `livemode` (test keys act in the tenant's test world)."""

from datetime import datetime

from shared import auth

from ..domain.customer import Customer
from ..domain.invoice import Invoice
from ..domain.plan import Plan, Price
from ..domain.subscription import Subscription

# NovaBilling's billingInterval for the periods it knows.
NOVA_INTERVALS = {("month", 1): "MONTHLY", ("month", 3): "QUARTERLY", ("year", 1): "YEARLY"}


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t else None


def invoice_view(inv: Invoice, tenant: str, payment_url: str | None = None) -> dict:
    f, totals = inv.fields, inv.totals
    items = []
    for priced in totals.lines:
        ln = priced.line
        item = {
            "description": ln.description,
            "quantity": ln.quantity,
            "unitAmount": ln.unit_amount,
            "amount": priced.amount,
            "discountAmount": priced.discount,
            "taxAmount": priced.tax,
        }
        if ln.tax_rate is not None:
            item["taxRate"] = str(ln.tax_rate)
        if ln.discount:
            item["discount"] = ln.discount.dump()
        items.append(item)
    return {
        "id": inv.id,
        "object": "invoice",
        "livemode": auth.livemode(tenant),
        "number": inv.number,
        "status": inv.status,
        "customerId": f.customer.id if f.customer else None,
        "customer": f.customer.dump() if f.customer else None,
        "subscriptionId": f.subscription_id,
        "currency": f.currency,
        "items": items,
        "taxRate": str(f.tax_rate) if f.tax_rate is not None else None,
        "taxInclusive": bool(f.tax_inclusive),
        "discount": f.discount.dump() if f.discount else None,
        "subtotal": totals.subtotal,
        "discountTotal": totals.discount_total,
        "taxTotal": totals.tax_total,
        "total": totals.total,
        "amount": totals.total,  # NovaBilling's name for the total
        "amountPaid": inv.amount_paid,
        "amountDue": inv.amount_due,
        "amountRefunded": inv.amount_refunded,
        "creditsApplied": inv.credits_applied,
        "writeOffAmount": inv.write_off_amount,
        "amountAdjusted": inv.amount_adjusted,
        "allowPartialPayments": f.allow_partial_payments is not False,
        "autoCollection": bool(f.auto_collection),
        "dueDate": f.due_date.isoformat() if f.due_date else None,
        "issuedOn": inv.issued_on.isoformat() if inv.issued_on else None,
        "notes": f.notes,
        "poNumber": f.po_number,
        "reference": f.reference,
        "returnUrl": f.return_url,
        "paymentUrl": payment_url,  # ZevPay's payment_url: the hosted page, for as long as the invoice lives
        "metadata": f.metadata or {},
        "finalizedAt": _iso(inv.finalized_at),
        "sentAt": _iso(inv.sent_at),
        "paidAt": _iso(inv.paid_at),
        "voidedAt": _iso(inv.voided_at),
        "voidReason": inv.void_reason,
        "writtenOffAt": _iso(inv.written_off_at),
        "createdAt": _iso(inv.created_at),
        "updatedAt": _iso(inv.updated_at),
    }


def customer_view(c: Customer, tenant: str) -> dict:
    f = c.fields
    return {
        "id": c.id,
        "object": "customer",
        "livemode": auth.livemode(tenant),
        "name": f.name,
        "email": f.email,
        "externalId": f.external_id,
        "country": f.country,
        "phone": f.phone,
        "currency": f.currency,
        "billingAddress": f.billing_address,
        "taxId": f.tax_id,
        "autoCollection": bool(f.auto_collection),
        "netTermDays": f.net_term_days or 0,
        "metadata": f.metadata or {},
        "creditBalance": c.credit.get(f.currency, 0) if f.currency else 0,
        "creditBalances": {k: v for k, v in c.credit.items() if v},
        "createdAt": _iso(c.created_at),
        "updatedAt": _iso(c.updated_at),
    }


def credit_note_view(
    *,
    tenant: str,
    id: str,
    number: str,
    invoice: Invoice,
    kind: str,
    amount: int,
    reason_code: str,
    reason: str | None,
    at: datetime,
) -> dict:
    """`kind`: "adjustment" (less is due: a write-off or one made by hand) or "refund"."""
    return {
        "id": id,
        "object": "credit_note",
        "livemode": auth.livemode(tenant),
        "number": number,
        "invoiceId": invoice.id,
        "customerId": invoice.fields.customer.id if invoice.fields.customer else None,
        "type": kind,
        "status": "refunded" if kind == "refund" else "adjusted",  # Chargebee's; "voided" once void
        "reasonCode": reason_code,
        "amount": amount,
        "currency": invoice.fields.currency,
        "reason": reason,
        "createdAt": _iso(at),
        "voidedAt": None,
    }


def voided_credit_note_view(note: dict, at: datetime) -> dict:
    return {**note, "status": "voided", "voidedAt": _iso(at)}


def price_view(plan_id: str, p: Price) -> dict:
    return {
        "id": p.id,
        "object": "plan_price",
        "planId": plan_id,
        "currency": p.currency,
        "amount": p.amount,
        "version": p.version,  # one more with each change of amount
        "createdAt": _iso(p.created_at),
        "updatedAt": _iso(p.updated_at),
    }


def plan_view(plan: Plan, tenant: str) -> dict:
    f = plan.fields
    return {
        "id": plan.id,
        "object": "plan",
        "livemode": auth.livemode(tenant),
        "code": f.code,
        "name": f.name,
        "description": f.description,
        "features": f.features or [],
        "interval": f.interval,
        "intervalCount": f.interval_count,
        "billingInterval": NOVA_INTERVALS.get((f.interval, f.interval_count)),
        "trialDays": f.trial_days or 0,
        "isActive": f.is_active is not False,
        "metadata": f.metadata or {},
        "prices": [price_view(plan.id, p) for p in plan.prices.values() if not p.removed],
        "createdAt": _iso(plan.created_at),
        "updatedAt": _iso(plan.updated_at),
    }


def subscription_view(sub: Subscription, tenant: str) -> dict:
    return {
        "id": sub.id,
        "object": "subscription",
        "livemode": auth.livemode(tenant),
        "status": sub.status,
        "customerId": sub.customer_id,
        "planId": sub.plan_id,
        "priceId": sub.price_id,
        "currency": sub.currency,
        "quantity": sub.quantity,
        "unitAmount": sub.amount,  # the current period's, per unit
        "amount": sub.amount * sub.quantity,
        "interval": sub.interval,
        "intervalCount": sub.interval_count,
        "trialEnd": _iso(sub.trial_end),
        "currentPeriod": sub.period,
        "currentPeriodStart": _iso(sub.period_start),
        "currentPeriodEnd": _iso(sub.period_end),
        "cancelAtPeriodEnd": sub.cancel_at_period_end,
        "canceledAt": _iso(sub.canceled_at),
        "endedAt": _iso(sub.ended_at),
        "pausedAt": _iso(sub.paused_at),
        "pendingPlanId": sub.next_plan.plan_id if sub.next_plan else None,
        "latestInvoiceId": sub.latest_invoice_id,
        "metadata": sub.metadata,
        "createdAt": _iso(sub.created_at),
        "updatedAt": _iso(sub.updated_at),
    }
