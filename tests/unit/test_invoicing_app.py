"""Invoicing's application layer on the in-memory event store (shared/memory_store.py, which
passes the same contract tests as the PostgreSQL store): commands load, decide, record and
retry on a version conflict exactly as in the service, in milliseconds. Commands that need
invoicing's own SQL (document numbers, references, dunning) are tested against PostgreSQL in
tests/integration."""

from datetime import UTC, date, datetime

import pytest

from services.invoicing.app.invoices import Invoicing
from services.invoicing.app.tenants import TenantHandlers
from services.invoicing.domain import events as ev
from services.invoicing.domain.events import STREAM_TOPICS, registry
from shared.aggregate import Aggregates
from shared.errors import Conflict, NotFound, Refused
from shared.memory_store import MemoryEventStore

NOW = datetime(2031, 3, 10, 9, 30, tzinfo=UTC)
TENANT = "ten_app"


@pytest.fixture
def store():
    return MemoryEventStore(dict(STREAM_TOPICS))


@pytest.fixture
def app(store):
    return Invoicing(store.pool(), Aggregates(store, registry, "/billstream/invoicing"), clock=lambda: NOW)


def line(amount=10000):
    return ev.LineData(description="Plan", quantity=1, unit_amount=amount)


async def test_a_new_invoice_takes_its_defaults_from_the_customer(app, store):
    customer = await app.create_customer(
        TENANT,
        ev.CustomerFields(name="Ada", email="ada@example.com", currency="KES", net_term_days=14, auto_collection=True),
    )
    invoice = await app.create_invoice(TENANT, customer["id"], ev.DraftFields(items=[line()]))
    assert (invoice["currency"], invoice["dueDate"], invoice["autoCollection"]) == ("KES", "2031-03-24", True)
    assert invoice["customer"] == {"id": customer["id"], "name": "Ada", "email": "ada@example.com"}
    # What was returned is what was recorded: the event carries the same snapshot, with our source.
    created = [e for e in store.events if e.stream_id == invoice["id"]]
    assert [(e.event.type, e.event.source, e.version) for e in created] == [
        ("invoice.created", "/billstream/invoicing", 1)
    ]
    assert created[0].event.data["invoice"]["currency"] == "KES"
    assert [r.topic for r in store.outbox] == ["billing.customers", "billing.invoices"]


async def test_an_explicit_field_beats_the_customer_default(app):
    customer = await app.create_customer(TENANT, ev.CustomerFields(name="Bo", currency="KES", net_term_days=14))
    invoice = await app.create_invoice(
        TENANT, customer["id"], ev.DraftFields(currency="UGX", due_date=date(2031, 5, 1), items=[line()])
    )
    assert (invoice["currency"], invoice["dueDate"]) == ("UGX", "2031-05-01")


async def test_charges_add_up_on_the_stream(app):
    customer = await app.create_customer(TENANT, ev.CustomerFields(name="Cy", currency="USD"))
    invoice = await app.create_invoice(TENANT, customer["id"], ev.DraftFields(items=[line(10000)]))
    after = await app.add_charge(TENANT, invoice["id"], line(2500))
    assert after["total"] == 12500
    async with app.pool.acquire() as conn:
        state = await app.load_invoice(conn, TENANT, invoice["id"])
    assert (state.version, state.totals.total) == (2, 12500)


async def test_another_tenants_invoice_and_customer_do_not_exist(app):
    customer = await app.create_customer(TENANT, ev.CustomerFields(name="Di", currency="USD"))
    invoice = await app.create_invoice(TENANT, customer["id"], ev.DraftFields(items=[line()]))
    with pytest.raises(NotFound):
        await app.add_charge("ten_other", invoice["id"], line())
    with pytest.raises(Refused) as err:
        await app.create_invoice("ten_other", customer["id"], ev.DraftFields(items=[line()]))
    assert (err.value.code, err.value.field) == ("customer_not_found", "customerId")
    with pytest.raises(NotFound):  # a customer's id is no invoice
        await app.add_charge(TENANT, customer["id"], line())


async def test_a_command_that_lost_the_race_decides_again_on_what_is_there(app):
    customer = await app.create_customer(TENANT, ev.CustomerFields(name="Ed", currency="USD"))
    invoice_id = (await app.create_invoice(TENANT, customer["id"], ev.DraftFields(items=[line(10000)])))["id"]
    load, versions = app.load_invoice, []

    async def load_then_lose_the_race(conn, tenant, inv_id, **kw):
        state = await load(conn, tenant, inv_id, **kw)
        versions.append(state.version)
        if len(versions) == 1:  # another request adds a charge between our load and our append
            rival = Invoicing(app.pool, app.aggregates, clock=app.clock)
            await rival.add_charge(TENANT, inv_id, line(1000))
        return state

    app.load_invoice = load_then_lose_the_race
    after = await app.add_charge(TENANT, invoice_id, line(500))
    assert versions == [1, 2]  # decided twice: the second time on the rival's version
    assert after["total"] == 11500  # both charges count


async def test_a_command_that_keeps_losing_answers_concurrent_update_and_writes_nothing(app, store):
    customer = await app.create_customer(TENANT, ev.CustomerFields(name="Fay", currency="USD"))
    invoice_id = (await app.create_invoice(TENANT, customer["id"], ev.DraftFields(items=[line()])))["id"]
    load, rival = app.load_invoice, Invoicing(app.pool, app.aggregates, clock=app.clock)
    attempts = []

    async def always_lose(conn, tenant, inv_id, **kw):
        state = await load(conn, tenant, inv_id, **kw)
        attempts.append(state.version)
        await rival.add_charge(TENANT, inv_id, line(1))
        return state

    app.load_invoice = always_lose
    with pytest.raises(Conflict) as err:
        await app.add_charge(TENANT, invoice_id, line(999))
    assert err.value.code == "concurrent_update" and len(attempts) == 5
    async with app.pool.acquire() as conn:
        state = await load(conn, TENANT, invoice_id)
    assert (state.version, state.totals.total) == (6, 10005)  # the rival's five charges; ours never landed


async def test_tenants_keys_are_created_and_revoked_once(store):
    # The memory store has no api_keys table to write inline (tests/e2e/test_tenants_api.py does).
    tenants = TenantHandlers(store.pool(), Aggregates(store, registry, "/billstream/invoicing"), project=None)
    tenant_id, first_key_id, key = await tenants.create("Acme")
    assert key.startswith("sk_test_")
    _, live_key = await tenants.create_key(tenant_id, "live")
    assert live_key.startswith("sk_live_")
    assert await tenants.revoke_key(tenant_id, first_key_id) is True
    assert await tenants.revoke_key(tenant_id, first_key_id) is False  # already revoked: no second event
    with pytest.raises(ValueError):
        await tenants.revoke_key(tenant_id, "key_unknown")
    with pytest.raises(ValueError):
        await tenants.create_key("ten_nobody", "test")
    await tenants.rename(tenant_id, " Acme Ltd ")
    await tenants.rename(tenant_id, "Acme Ltd")  # the same name: no second event
    state, _ = await tenants.state(tenant_id)
    assert state.name == "Acme Ltd" and state.keys[first_key_id].revoked_at is not None
    assert [k.mode for k in state.keys.values() if k.revoked_at is None] == ["live"]
    types = [e.event.type for e in store.events if e.stream_id == tenant_id]
    assert types == ["tenant.created", "api_key.created", "api_key.created", "api_key.revoked", "tenant.updated"]
    assert {r.topic for r in store.outbox} == {"billing.tenants"}
