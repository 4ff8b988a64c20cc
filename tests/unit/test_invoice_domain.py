from datetime import date

import pytest

from services.invoicing.domain.events import InvoiceCreated
from services.invoicing.domain.invoice import CreateDraft, Invoice, ItemInput, decide_create, fold
from services.invoicing.domain.tenant import NewKey, decide_create_tenant, decide_revoke_key
from shared.errors import ApiError, Conflict


def draft(*items: ItemInput) -> CreateDraft:
    return CreateDraft(invoice_id="inv_1", customer_id="cust_1", currency="UGX",
                       due_date=date(2026, 12, 31), items=items)


def test_create_draft_totals_lines_in_minor_units():
    [created] = decide_create(Invoice(), draft(ItemInput("Pro", 2, 180000), ItemInput("Setup", 1, 5)))
    assert isinstance(created, InvoiceCreated)
    assert [i.amount for i in created.items] == [360000, 5]
    assert created.subtotal == created.total == created.amount_due == 360005
    state = fold([("invoice.created", created)])
    assert (state.status, state.version, state.amount_due) == ("DRAFT", 1, 360005)


@pytest.mark.parametrize(
    ("items", "code", "field"),
    [
        ((), "items_required", "items"),
        ((ItemInput("x", 0, 1),), "quantity_invalid", "items.0.quantity"),
        ((ItemInput("ok", 1, 1), ItemInput("x", 1, -1)), "amount_invalid", "items.1.unitAmount"),
    ],
)
def test_create_draft_refuses_bad_lines(items, code, field):
    with pytest.raises(ApiError) as err:
        decide_create(Invoice(), draft(*items))
    assert (err.value.code, err.value.field) == (code, field)


def test_an_invoice_is_created_once():
    [created] = decide_create(Invoice(), draft(ItemInput("Pro", 1, 1)))
    with pytest.raises(Conflict):
        decide_create(fold([("invoice.created", created)]), draft(ItemInput("Pro", 1, 1)))


def test_tenant_creation_and_key_revocation():
    events = decide_create_tenant(" Acme ", NewKey("key_1", "h", "sk_test_abcd", "test"))
    assert [t for t, _ in events] == ["tenant.created", "api_key.created"]
    assert events[0][1].name == "Acme"
    assert [t for t, _ in decide_revoke_key({"key_1"}, set(), "key_1")] == ["api_key.revoked"]
    assert decide_revoke_key({"key_1"}, {"key_1"}, "key_1") == []
    with pytest.raises(ValueError):
        decide_revoke_key({"key_1"}, set(), "key_2")
    with pytest.raises(ValueError):
        decide_create_tenant("  ", NewKey("k", "h", "p", "test"))
