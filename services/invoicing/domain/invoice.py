"""The invoice aggregate: pure decide/evolve functions, no I/O and no clock (times come in).

Every decide_* takes the current state and a command's inputs and returns the facts to record,
or raises a domain error; evolve folds a fact into the state. Status is derived from the facts
(see `status`), never stored.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from shared.errors import Conflict, NotFound, Refused
from shared.limits import check_amount, check_date

from . import events as ev
from .totals import Discount, Line, Totals, price

Fact = tuple[str, ev.Contract]

DRAFT, PENDING, PARTIALLY_PAID, OVERDUE, FAILED = "DRAFT", "PENDING", "PARTIALLY_PAID", "OVERDUE", "FAILED"
UNCOLLECTIBLE, PAID, VOID, WRITTEN_OFF = "UNCOLLECTIBLE", "PAID", "VOID", "WRITTEN_OFF"
STATUSES = (DRAFT, PENDING, PARTIALLY_PAID, OVERDUE, FAILED, UNCOLLECTIBLE, PAID, VOID, WRITTEN_OFF)
OPEN = frozenset({PENDING, PARTIALLY_PAID, OVERDUE, FAILED, UNCOLLECTIBLE})  # finalized, money due
PAYMENT_METHODS = ("cash", "check", "bank_transfer", "other", "card", "mobile_money")
# Why a credit note is created by hand (Chargebee's create_reason_code). Write-offs ("write_off")
# and refunds ("refund") make their own notes.
CREDIT_NOTE_REASONS = (
    "product_unsatisfactory",
    "service_unsatisfactory",
    "order_change",
    "order_cancellation",
    "waiver",
    "chargeback",
    "fraudulent",
    "subscription_change",
    "subscription_cancellation",
    "subscription_pause",
    "other",
)


class InvalidTransition(Conflict):
    def __init__(self, action: str, status: str) -> None:
        super().__init__(
            f"invoice_{status.lower()}", f"Cannot {action} an invoice whose status is {status}.", field="status"
        )


@dataclass(frozen=True)
class Invoice:
    id: str | None = None
    version: int = 0
    deleted: bool = False
    fields: ev.DraftFields = field(default_factory=ev.DraftFields)
    number: str | None = None
    issued_on: date | None = None
    finalized_at: datetime | None = None
    sent_at: datetime | None = None
    paid_at: datetime | None = None
    voided_at: datetime | None = None
    void_reason: str | None = None
    written_off_at: datetime | None = None
    amount_paid: int = 0
    credits_applied: int = 0
    write_off_amount: int = 0
    amount_refunded: int = 0
    amount_adjusted: int = 0  # by adjustment credit notes still in force
    adjustments: dict[str, int] = field(default_factory=dict)  # credit note id → amount, in force
    credit_notes: dict[str, dict[str, Any]] = field(default_factory=dict)  # credit note id → its view
    overdue: bool = False
    collection_failed: bool = False
    uncollectible: bool = False
    payment_ids: frozenset[str] = frozenset()
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.version > 0 and not self.deleted

    @property
    def totals(self) -> Totals:
        return compute_totals(self.fields)

    @property
    def amount_due(self) -> int:
        if self.voided_at or self.written_off_at:
            return 0
        owed = self.totals.total - self.amount_paid - self.credits_applied - self.write_off_amount
        return max(owed - self.amount_adjusted, 0)

    @property
    def status(self) -> str:
        """Derived, in this order of precedence (documented in docs/invoicing.md)."""
        if self.voided_at:
            return VOID
        if self.written_off_at:
            return WRITTEN_OFF
        if not self.finalized_at:
            return DRAFT
        if self.amount_due == 0:
            return PAID
        if self.uncollectible:
            return UNCOLLECTIBLE
        if self.collection_failed:
            return FAILED
        if self.overdue:
            return OVERDUE
        if self.amount_paid or self.credits_applied:
            return PARTIALLY_PAID
        return PENDING


def to_line(data: ev.LineData) -> Line:
    discount = Discount(data.discount.percent, data.discount.amount) if data.discount else None
    return Line(data.description, data.quantity, data.unit_amount, data.tax_rate, discount)


def compute_totals(f: ev.DraftFields) -> Totals:
    discount = Discount(f.discount.percent, f.discount.amount) if f.discount else None
    return price(
        [to_line(i) for i in f.items or []], tax_rate=f.tax_rate, tax_inclusive=bool(f.tax_inclusive), discount=discount
    )


# -- validation shared by create, update and import -------------------------------------------


def check_fields(f: ev.DraftFields) -> None:
    if not f.items:
        raise Refused("items_required", "An invoice needs at least one item.", field="items")
    for i, item in enumerate(f.items):
        if item.quantity <= 0:
            raise Refused("quantity_invalid", "quantity must be a positive whole number.", field=f"items.{i}.quantity")
        if item.unit_amount < 0:
            raise Refused("amount_invalid", "unitAmount must not be negative.", field=f"items.{i}.unitAmount")
        check_amount(item.unit_amount, f"items.{i}.unitAmount")
        check_amount(item.quantity * item.unit_amount, f"items.{i}.amount")
        _check_rate(item.tax_rate, f"items.{i}.taxRate")
        _check_discount(item.discount, f"items.{i}.discount")
    _check_rate(f.tax_rate, "taxRate")
    _check_discount(f.discount, "discount")
    if f.due_date is not None:
        check_date(f.due_date, "dueDate")
    totals = compute_totals(f)
    check_amount(totals.subtotal, "subtotal")
    check_amount(totals.total, "total")


def _check_rate(rate: Decimal | None, name: str) -> None:
    if rate is not None and not (Decimal(0) <= rate <= Decimal(100)):
        raise Refused("tax_rate_invalid", "Tax rates are percentages between 0 and 100.", field=name)


def _check_discount(d: ev.DiscountData | None, name: str) -> None:
    if d is None:
        return
    if (d.percent is None) == (d.amount is None):
        raise Refused("discount_invalid", "A discount has either percent or amount.", field=name)
    if d.percent is not None and not (Decimal(0) <= d.percent <= Decimal(100)):
        raise Refused("discount_invalid", "percent must be between 0 and 100.", field=name)
    if d.amount is not None and d.amount < 0:
        raise Refused("discount_invalid", "amount must not be negative.", field=name)
    if d.amount is not None:
        check_amount(d.amount, f"{name}.amount")


def _require(state: Invoice) -> None:
    if not state.exists:
        raise NotFound("invoice", str(state.id))  # a folded state has its id; str() as the message did


# -- decisions ----------------------------------------------------------------------------------


def decide_create(state: Invoice, fields: ev.DraftFields) -> list[Fact]:
    if state.version:
        raise Conflict("invoice_exists", "This invoice already exists.")
    check_fields(fields)
    return [("invoice.created", ev.InvoiceCreated(fields=fields))]


def decide_update(state: Invoice, changes: ev.DraftFields) -> list[Fact]:
    _require(state)
    if state.status != DRAFT:
        raise Conflict(
            "invoice_not_editable", f"Only drafts can be edited; this invoice is {state.status}.", field="status"
        )
    changed = sorted(changes.model_fields_set)
    if not changed:
        return []
    check_fields(state.fields.model_copy(update={k: getattr(changes, k) for k in changed}))
    names = [ev.DraftFields.model_fields[k].alias or k for k in changed]
    return [("invoice.updated", ev.InvoiceUpdated(changes=names, fields=changes))]


def decide_add_charge(state: Invoice, line: ev.LineData) -> list[Fact]:
    """Chargebee's add_charge on a pending invoice: a draft collecting charges until closed."""
    _require(state)
    return decide_update(state, ev.DraftFields(items=[*(state.fields.items or []), line]))


def decide_finalize(state: Invoice, *, number: str, credit_available: int) -> list[Fact]:
    _require(state)
    if state.status != DRAFT:
        raise InvalidTransition("finalize", state.status)
    credits = min(credit_available, state.totals.total)
    facts: list[Fact] = [("invoice.finalized", ev.InvoiceFinalized(number=number, credits_applied=credits))]
    if credits == state.totals.total:
        facts.append(("invoice.paid", ev.InvoicePaid()))
    return facts


def decide_send(state: Invoice, *, number: str | None, credit_available: int) -> list[Fact]:
    _require(state)
    facts: list[Fact] = []
    if state.status == DRAFT:
        if number is None:
            raise ValueError("a draft needs a number to be sent")
        facts = decide_finalize(state, number=number, credit_available=credit_available)
    elif state.status in (VOID, WRITTEN_OFF):
        raise InvalidTransition("send", state.status)
    return [*facts, ("invoice.sent", ev.InvoiceSent())]


def decide_payment(
    state: Invoice,
    *,
    payment_id: str,
    amount: int,
    method: str,
    reference: str | None = None,
    paid_on: date | None = None,
    offline: bool = False,
) -> list[Fact]:
    """Money received for this invoice: applied up to the amount due; any excess is the
    customer's credit (the caller records it on the customer)."""
    _require(state)
    if payment_id in state.payment_ids:
        return []  # the same payment twice changes nothing
    if amount <= 0:
        raise Refused("amount_invalid", "amount must be positive.", field="amount")
    check_amount(amount, "amount")
    if paid_on is not None:
        check_date(paid_on, "date")
    if offline:
        if state.status not in OPEN:
            raise InvalidTransition("record a payment for", state.status)
        if amount < state.amount_due and not state.fields.allow_partial_payments:
            raise Conflict(
                "partial_payment_not_allowed",
                "This invoice does not accept partial payments; pay the amount due.",
                field="amount",
            )
    due = state.amount_due if state.status in OPEN else 0
    applied = min(amount, due)
    paid_after, due_after = state.amount_paid + applied, due - applied
    facts: list[Fact] = [
        (
            "invoice.payment_received",
            ev.PaymentReceived(
                payment_id=payment_id,
                amount=amount,
                applied=applied,
                overpayment=amount - applied,
                method=method,
                reference=reference,
                paid_on=paid_on,
                offline=offline,
                is_partial=due_after > 0 and applied > 0,
                is_fully_paid=due > 0 and due_after == 0,
                amount_paid=paid_after,
                amount_due=due_after,
            ),
        )
    ]
    if due > 0 and due_after == 0:
        facts.append(("invoice.paid", ev.InvoicePaid()))
    return facts


def decide_void(state: Invoice, reason: str | None) -> list[Fact]:
    _require(state)
    if state.status not in OPEN:
        raise InvalidTransition("void", state.status)
    if state.amount_paid:
        raise Conflict(
            "invoice_has_payments",
            "An invoice with successful payments cannot be voided; write it off or refund instead.",
        )
    return [("invoice.voided", ev.InvoiceVoided(reason=reason, credits_returned=state.credits_applied))]


def decide_write_off(state: Invoice, credit_note_id: str) -> list[Fact]:
    _require(state)
    if state.status not in OPEN:
        raise InvalidTransition("write off", state.status)
    return [("invoice.written_off", ev.WrittenOff(amount=state.amount_due, credit_note_id=credit_note_id))]


def decide_adjust(state: Invoice, *, credit_note_id: str, amount: int, reason_code: str) -> list[Fact]:
    """An adjustment credit note made by hand: part of what is due is no longer owed."""
    _require(state)
    if state.status not in OPEN:
        raise InvalidTransition("credit", state.status)
    if reason_code not in CREDIT_NOTE_REASONS:
        raise Refused(
            "reason_code_invalid", f"reasonCode is one of {', '.join(CREDIT_NOTE_REASONS)}.", field="reasonCode"
        )
    if not 0 < amount <= state.amount_due:
        raise Refused(
            "amount_invalid", f"amount must be between 1 and the amount due ({state.amount_due}).", field="amount"
        )
    facts: list[Fact] = [("invoice.adjusted", ev.InvoiceAdjusted(credit_note_id=credit_note_id, amount=amount))]
    if amount == state.amount_due:
        facts.append(("invoice.paid", ev.InvoicePaid()))
    return facts


def decide_void_credit_note(state: Invoice, credit_note_id: str) -> list[Fact]:
    """Take back an adjustment made by hand, while the invoice still has money due (once it is
    paid, voided or written off the adjustment is part of how it closed)."""
    _require(state)
    note = state.credit_notes.get(credit_note_id)
    if note is None:
        raise NotFound("credit note", credit_note_id)
    if note.get("status") == "voided":
        raise Conflict("credit_note_voided", "This credit note is already void.", field="status")
    if credit_note_id not in state.adjustments:
        raise Conflict(
            "credit_note_not_voidable",
            "Only credit notes made by hand can be voided; this one records a write-off or a refund.",
        )
    if state.status not in OPEN:
        raise InvalidTransition("void a credit note of", state.status)
    amount = state.adjustments[credit_note_id]
    return [("invoice.adjustment_voided", ev.AdjustmentVoided(credit_note_id=credit_note_id, amount=amount))]


def decide_delete(state: Invoice) -> list[Fact]:
    _require(state)
    if state.status != DRAFT:
        raise InvalidTransition("delete", state.status)
    return [("invoice.deleted", ev.InvoiceDeleted())]


def decide_overdue(state: Invoice, due_date: date) -> list[Fact]:
    if not state.exists or state.overdue or state.status not in OPEN:
        return []  # paid, voided or already overdue: nothing to record
    if state.fields.due_date and due_date < state.fields.due_date:
        return []  # the due date moved later than the timer that fired
    return [("invoice.overdue", ev.InvoiceOverdue(due_date=state.fields.due_date or due_date))]


def decide_payment_failed(
    state: Invoice, *, payment_id: str | None, reason_code: str | None, reason: str | None, attempt: int | None
) -> list[Fact]:
    if not state.exists or state.status not in OPEN:
        return []
    return [
        (
            "invoice.payment_failed",
            ev.PaymentFailed(payment_id=payment_id, reason_code=reason_code, reason=reason, attempt=attempt),
        )
    ]


def decide_dunning_exhausted(state: Invoice, final_action: str) -> list[Fact]:
    if not state.exists or state.status not in OPEN:
        return []
    if final_action == "void" and not state.amount_paid:
        return decide_void(state, "dunning exhausted")
    if final_action in ("void", "mark_uncollectible") and not state.uncollectible:
        return [("invoice.marked_uncollectible", ev.MarkedUncollectible())]
    return []  # leave_open


def decide_refund(state: Invoice, *, payment_id: str, refund_id: str, amount: int, credit_note_id: str) -> list[Fact]:
    if not state.exists:
        return []
    return [
        (
            "invoice.refunded",
            ev.InvoiceRefunded(
                payment_id=payment_id, refund_id=refund_id, amount=amount, credit_note_id=credit_note_id
            ),
        )
    ]


def decide_import(
    state: Invoice, *, fields: ev.DraftFields, number: str, issued_on: date, status: str, amount_paid: int
) -> list[Fact]:
    if state.version:
        raise Conflict("invoice_exists", "This invoice already exists.")
    check_fields(fields)
    check_date(issued_on, "issuedOn")
    if status not in (PENDING, PAID, VOID):
        raise Refused("status_invalid", "Imported invoices are PENDING, PAID or VOID.", field="status")
    total = compute_totals(fields).total
    if status == PAID:
        amount_paid = total
    if not 0 <= amount_paid <= total:
        raise Refused("amount_invalid", "amountPaid must be between 0 and the total.", field="amountPaid")
    return [
        (
            "invoice.imported",
            ev.InvoiceImported(
                fields=fields, number=number, issued_on=issued_on, status=status, amount_paid=amount_paid
            ),
        )
    ]


# -- evolution ----------------------------------------------------------------------------------


def evolve(state: Invoice, event_type: str, fact: ev.Contract, *, subject: str, at: datetime) -> Invoice:
    s = replace(state, id=subject, version=state.version + 1, updated_at=at)
    match event_type, fact:
        case "invoice.created", ev.InvoiceCreated(fields=f):
            return replace(s, fields=f, created_at=at)
        case "invoice.updated", ev.InvoiceUpdated(changes=changed, fields=f):
            names = ev.field_names(ev.DraftFields, changed)
            return replace(s, fields=s.fields.model_copy(update={k: getattr(f, k) for k in names}))
        case "invoice.imported", ev.InvoiceImported() as f:
            return replace(
                s,
                fields=f.fields,
                created_at=at,
                number=f.number,
                issued_on=f.issued_on,
                finalized_at=at,
                amount_paid=f.amount_paid,
                paid_at=at if f.status == PAID else None,
                voided_at=at if f.status == VOID else None,
            )
        case "invoice.finalized", ev.InvoiceFinalized(number=n, credits_applied=c):
            return replace(s, number=n, finalized_at=at, issued_on=at.date(), credits_applied=c)
        case "invoice.sent", _:
            return replace(s, sent_at=s.sent_at or at)
        case "invoice.payment_received", ev.PaymentReceived() as p:
            return replace(
                s,
                amount_paid=s.amount_paid + p.applied,
                collection_failed=False,
                payment_ids=s.payment_ids | {p.payment_id},
            )
        case "invoice.paid", _:
            return replace(s, paid_at=at)
        case "invoice.overdue", _:
            return replace(s, overdue=True)
        case "invoice.payment_failed", _:
            return replace(s, collection_failed=True)
        case "invoice.marked_uncollectible", _:
            return replace(s, uncollectible=True)
        case "invoice.voided", ev.InvoiceVoided(reason=r):
            return replace(s, voided_at=at, void_reason=r, credits_applied=0)
        case "invoice.written_off", ev.WrittenOff(amount=a):
            return replace(s, written_off_at=at, write_off_amount=a)
        case "invoice.refunded", ev.InvoiceRefunded(amount=a):
            return replace(s, amount_refunded=s.amount_refunded + a)
        case "invoice.adjusted", ev.InvoiceAdjusted(credit_note_id=n, amount=a):
            return replace(s, amount_adjusted=s.amount_adjusted + a, adjustments={**s.adjustments, n: a})
        case "invoice.adjustment_voided", ev.AdjustmentVoided(credit_note_id=n, amount=a):
            left = {k: v for k, v in s.adjustments.items() if k != n}
            return replace(s, amount_adjusted=s.amount_adjusted - a, adjustments=left)
        case "credit_note.created" | "credit_note.voided", ev.CreditNoteCreated(credit_note=note):
            return replace(s, credit_notes={**s.credit_notes, note["id"]: note})
        case "invoice.deleted", _:
            return replace(s, deleted=True)
    return s  # types this code does not fold


def fold(history: Sequence[tuple[str, ev.Contract, datetime]], subject: str) -> Invoice:
    state = Invoice(id=subject)
    for event_type, fact, at in history:
        state = evolve(state, event_type, fact, subject=subject, at=at)
    return state
