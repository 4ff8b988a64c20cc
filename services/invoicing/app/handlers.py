"""Invoicing's application layer. Each command runs in one transaction: load the streams it
needs, decide, append (with each event's resource snapshot), plus any bookkeeping rows
(invoice numbers, references). HTTP commands retry on a version conflict; consumers get the
caller's transaction (the inbox's) and let a conflict redeliver the event.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import asyncpg

from shared.auth import generate_key, hash_key
from shared.errors import Conflict, NotFound, Refused
from shared.eventstore import ConcurrencyError, EventStore
from shared.ids import new_id

from ..api.views import credit_note_view, customer_view, invoice_view
from ..domain import customer as cust
from ..domain import events as ev
from ..domain import invoice as inv
from ..domain.tenant import NewKey, decide_create_key, decide_create_tenant, decide_revoke_key

SOURCE = "/billstream/invoicing"
T = TypeVar("T")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Invoicing:
    def __init__(self, pool: asyncpg.Pool, store: EventStore, clock: Clock = utcnow,
                 pdf_link: Callable[[str, str], str] | None = None) -> None:
        """`pdf_link(tenant, invoice_id)` signs the PDF link that invoice.paid carries."""
        self.pool, self.store, self.clock, self.pdf_link = pool, store, clock, pdf_link

    async def transact(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], attempts: int = 5) -> T:
        """Run fn in a transaction; on a concurrent write to the same stream, reload and retry."""
        for attempt in range(attempts):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    return await fn(conn)
            except ConcurrencyError:
                if attempt == attempts - 1:
                    raise Conflict("concurrent_update", "The invoice changed while this request ran; retry.")
                await asyncio.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    # -- loading ------------------------------------------------------------------------------

    async def _history(self, conn, stream_id: str, as_of: datetime | None = None):
        stored = await self.store.read_stream(conn, stream_id, as_of=as_of)
        return stored, [(s.event.type, ev.registry.load(s.event), s.event.time) for s in stored]

    async def load_invoice(self, conn, tenant: str, invoice_id: str, *, as_of: datetime | None = None,
                           allow_deleted: bool = False) -> inv.Invoice:
        stored, history = await self._history(conn, invoice_id, as_of)
        if not stored or stored[0].event.tenantid != tenant or stored[0].stream_type != "invoice":
            raise NotFound("invoice", invoice_id)  # another tenant's invoice does not exist here
        state = inv.fold(history, invoice_id)
        if state.deleted and not allow_deleted:
            raise NotFound("invoice", invoice_id)
        return state

    async def load_customer(self, conn, tenant: str, customer_id: str, *, field: str | None = None) -> cust.Customer:
        stored, history = await self._history(conn, customer_id)
        if not stored or stored[0].event.tenantid != tenant or stored[0].stream_type != "customer":
            if field:
                raise Refused("customer_not_found", f"No such customer: '{customer_id}'", field=field)
            raise NotFound("customer", customer_id)
        return cust.fold(history, customer_id)

    # -- recording ----------------------------------------------------------------------------

    async def _record(self, conn, tenant: str, stream_type: str, state, facts, at: datetime, *,
                      evolve, snapshot: tuple[str, Callable]):
        """Fold each fact into the state, put the resource as it is after it into the event's
        data (`snapshot` = (key, view)), and append them all at the state's version."""
        key, view = snapshot
        envelopes, s = [], state
        for event_type, fact in facts:
            s = evolve(s, event_type, fact, subject=state.id, at=at)
            data = fact.dump() if event_type == "credit_note.created" else {**fact.dump(), key: view(s, tenant)}
            envelopes.append(ev.registry.new_event(event_type, type(fact).model_validate(data), source=SOURCE,
                                                   subject=state.id, tenant_id=tenant, time=at))
        await self.store.append(conn, stream_type, state.id, state.version, envelopes)
        return s

    async def _record_invoice(self, conn, tenant: str, state: inv.Invoice, facts: list[inv.Fact], at: datetime,
                              extra: list[tuple[str, ev.Contract]] = ()) -> inv.Invoice:
        if self.pdf_link:
            facts = [(t, f.model_copy(update={"pdf_url": self.pdf_link(tenant, state.id)}) if t == "invoice.paid" else f)
                     for t, f in facts]
        return await self._record(conn, tenant, "invoice", state, [*facts, *extra], at,
                                  evolve=inv.evolve, snapshot=("invoice", invoice_view))

    async def _record_customer(self, conn, tenant: str, state: cust.Customer, facts: list[cust.Fact],
                               at: datetime) -> cust.Customer:
        return await self._record(conn, tenant, "customer", state, facts, at,
                                  evolve=cust.evolve, snapshot=("customer", customer_view))

    async def _next_number(self, conn, tenant: str, kind: str, year: int) -> str:
        """Per-tenant, per-year sequence. The row lock is held to commit, and a rolled-back
        transaction gives its number back: no gaps, no duplicates."""
        value = await conn.fetchval(
            """INSERT INTO document_sequences (tenant_id, kind, year, last_value) VALUES ($1, $2, $3, 1)
               ON CONFLICT (tenant_id, kind, year) DO UPDATE SET last_value = document_sequences.last_value + 1
               RETURNING last_value""", tenant, kind, year)
        try:
            return await self._claim_number(conn, tenant, f"{kind}-{year}-{value:06d}")
        except Conflict:
            pass
        # An imported number sits on the next value: step over every taken one in one query.
        value = await conn.fetchval(
            """UPDATE document_sequences SET last_value = (
                   SELECT v FROM generate_series($4::bigint + 1, $4::bigint + 1000000) AS v
                   WHERE NOT EXISTS (SELECT 1 FROM document_numbers d WHERE d.tenant_id = $1
                                     AND d.number = $2 || '-' || $3 || '-' || lpad(v::text, greatest(6, length(v::text)), '0'))
                   LIMIT 1)  -- generate_series yields in order, so the first free value
               WHERE tenant_id = $1 AND kind = $2 AND year = $3 RETURNING last_value""", tenant, kind, year, value)
        return await self._claim_number(conn, tenant, f"{kind}-{year}-{value:06d}")

    async def _claim_number(self, conn, tenant: str, number: str) -> str:
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO document_numbers (tenant_id, number) VALUES ($1, $2)", tenant, number)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("number_taken", f"Number {number} is already used.", field="number") from exc
        return number

    async def _release_reference(self, conn, tenant: str, invoice_id: str) -> None:
        await conn.execute("DELETE FROM invoice_references WHERE tenant_id = $1 AND invoice_id = $2", tenant, invoice_id)

    async def _claim_reference(self, conn, tenant: str, reference: str | None, invoice_id: str) -> None:
        if not reference:
            return
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO invoice_references (tenant_id, reference, invoice_id) VALUES ($1, $2, $3)",
                                   tenant, reference, invoice_id)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("reference_taken", f"Another invoice already has reference '{reference}'.", field="reference") from exc

    async def _apply_overpayment(self, conn, tenant: str, state: inv.Invoice, facts: list[inv.Fact], at: datetime) -> None:
        for event_type, fact in facts:
            if event_type == "invoice.payment_received" and fact.overpayment > 0:
                customer = await self.load_customer(conn, tenant, state.fields.customer.id)
                await self._record_customer(conn, tenant, customer, cust.decide_add_credit(
                    customer, fact.overpayment, state.fields.currency, invoice_id=state.id, reason="overpayment"), at)

    # -- customers ----------------------------------------------------------------------------

    async def create_customer(self, tenant: str, fields: ev.CustomerFields) -> dict:
        async def run(conn):
            state = cust.Customer(id=new_id("cust"))
            return customer_view(await self._record_customer(conn, tenant, state, cust.decide_create(state, fields), self.clock()), tenant)
        return await self.transact(run)

    async def update_customer(self, tenant: str, customer_id: str, changes: ev.CustomerFields) -> dict:
        async def run(conn):
            state = await self.load_customer(conn, tenant, customer_id)
            return customer_view(await self._record_customer(conn, tenant, state, cust.decide_update(state, changes), self.clock()), tenant)
        return await self.transact(run)

    async def get_customer(self, tenant: str, customer_id: str) -> dict:
        async with self.pool.acquire() as conn:
            return customer_view(await self.load_customer(conn, tenant, customer_id), tenant)

    # -- invoices -----------------------------------------------------------------------------

    async def _draft_fields(self, conn, tenant: str, fields: ev.DraftFields, customer_id: str | None,
                            *, creating: bool) -> ev.DraftFields:
        """Fill in what comes from the customer: its snapshot, and defaults on creation."""
        if customer_id is None:
            return fields
        customer = await self.load_customer(conn, tenant, customer_id, field="customerId")
        c = customer.fields
        update = {"customer": ev.CustomerRef(id=customer.id, name=c.name, email=c.email)}
        if creating:
            if fields.currency is None:
                update["currency"] = c.currency or "USD"
            if fields.due_date is None:
                update["due_date"] = self.clock().date() + timedelta(days=c.net_term_days or 0)
            if fields.auto_collection is None:
                update["auto_collection"] = bool(c.auto_collection)
            if fields.allow_partial_payments is None:
                update["allow_partial_payments"] = True
        merged = fields.model_copy(update=update)
        # model_copy does not mark fields as set; re-validate so PATCH sees what changed.
        return ev.DraftFields.model_validate(
            {**fields.model_dump(exclude_unset=True), **{k: getattr(merged, k) for k in update}})

    async def create_invoice(self, tenant: str, customer_id: str, fields: ev.DraftFields) -> dict:
        async def run(conn):
            state = inv.Invoice(id=new_id("inv"))
            full = await self._draft_fields(conn, tenant, fields, customer_id, creating=True)
            facts = inv.decide_create(state, full)
            await self._claim_reference(conn, tenant, full.reference, state.id)
            return invoice_view(await self._record_invoice(conn, tenant, state, facts, self.clock()), tenant)
        return await self.transact(run)

    async def update_invoice(self, tenant: str, invoice_id: str, customer_id: str | None, changes: ev.DraftFields) -> dict:
        async def run(conn):
            state = await self.load_invoice(conn, tenant, invoice_id)
            full = await self._draft_fields(conn, tenant, changes, customer_id, creating=False)
            facts = inv.decide_update(state, full)
            if "reference" in full.model_fields_set:
                await self._release_reference(conn, tenant, invoice_id)
                await self._claim_reference(conn, tenant, full.reference, invoice_id)
            return invoice_view(await self._record_invoice(conn, tenant, state, facts, self.clock()), tenant)
        return await self.transact(run)

    async def add_charge(self, tenant: str, invoice_id: str, line: ev.LineData) -> dict:
        async def run(conn):
            state = await self.load_invoice(conn, tenant, invoice_id)
            return invoice_view(await self._record_invoice(conn, tenant, state, inv.decide_add_charge(state, line), self.clock()), tenant)
        return await self.transact(run)

    async def _finalizing(self, conn, tenant: str, state: inv.Invoice, at: datetime):
        """Number and credit for a draft about to be finalized (None, 0 otherwise)."""
        if state.status != inv.DRAFT:
            return None, 0, None
        number = await self._next_number(conn, tenant, "INV", at.year)
        try:
            customer = await self.load_customer(conn, tenant, state.fields.customer.id)
        except NotFound:  # invoices from before customers existed name an id with no stream
            return number, 0, None
        return number, customer.credit.get(state.fields.currency, 0), customer

    async def _after_finalize(self, conn, tenant, state, facts, customer, at) -> None:
        for event_type, fact in facts:
            if event_type == "invoice.finalized" and fact.credits_applied:
                await self._record_customer(conn, tenant, customer, cust.decide_apply_credit(
                    customer, fact.credits_applied, state.fields.currency, state.id), at)

    async def finalize(self, tenant: str, invoice_id: str) -> dict:
        async def run(conn):
            at = self.clock()
            state = await self.load_invoice(conn, tenant, invoice_id)
            if state.status != inv.DRAFT:
                raise inv.InvalidTransition("finalize", state.status)
            number, credit, customer = await self._finalizing(conn, tenant, state, at)
            facts = inv.decide_finalize(state, number=number, credit_available=credit)
            await self._after_finalize(conn, tenant, state, facts, customer, at)
            return invoice_view(await self._record_invoice(conn, tenant, state, facts, at), tenant)
        return await self.transact(run)

    async def send(self, tenant: str, invoice_id: str) -> dict:
        async def run(conn):
            at = self.clock()
            state = await self.load_invoice(conn, tenant, invoice_id)
            if state.status in (inv.VOID, inv.WRITTEN_OFF):
                raise inv.InvalidTransition("send", state.status)
            number, credit, customer = await self._finalizing(conn, tenant, state, at)
            facts = inv.decide_send(state, number=number, credit_available=credit)
            await self._after_finalize(conn, tenant, state, facts, customer, at)
            return invoice_view(await self._record_invoice(conn, tenant, state, facts, at), tenant)
        return await self.transact(run)

    async def record_offline_payment(self, tenant: str, invoice_id: str, *, amount: int | None, method: str,
                                     reference: str | None, paid_on: date | None) -> dict:
        async def run(conn):
            at = self.clock()
            state = await self.load_invoice(conn, tenant, invoice_id)
            facts = inv.decide_payment(state, payment_id=new_id("pay"), amount=amount or state.amount_due,
                                       method=method, reference=reference, paid_on=paid_on, offline=True)
            await self._apply_overpayment(conn, tenant, state, facts, at)
            return invoice_view(await self._record_invoice(conn, tenant, state, facts, at), tenant)
        return await self.transact(run)

    async def void(self, tenant: str, invoice_id: str, reason: str | None) -> dict:
        async def run(conn):
            at = self.clock()
            state = await self.load_invoice(conn, tenant, invoice_id)
            facts = inv.decide_void(state, reason)
            await self._return_credits(conn, tenant, state, facts, at)
            return invoice_view(await self._record_invoice(conn, tenant, state, facts, at), tenant)
        return await self.transact(run)

    async def _return_credits(self, conn, tenant, state, facts, at) -> None:
        for event_type, fact in facts:
            if event_type == "invoice.voided" and fact.credits_returned:
                customer = await self.load_customer(conn, tenant, state.fields.customer.id)
                await self._record_customer(conn, tenant, customer, cust.decide_add_credit(
                    customer, fact.credits_returned, state.fields.currency, invoice_id=state.id,
                    reason="invoice voided"), at)

    async def write_off(self, tenant: str, invoice_id: str, reason: str | None) -> dict:
        async def run(conn):
            at = self.clock()
            state = await self.load_invoice(conn, tenant, invoice_id)
            cn_id = new_id("cn")
            facts = inv.decide_write_off(state, cn_id)
            note = await self._credit_note(conn, tenant, state, cn_id, "adjustment", state.amount_due,
                                           reason or "written off", at)
            return invoice_view(await self._record_invoice(conn, tenant, state, facts, at, extra=[note]), tenant)
        return await self.transact(run)

    async def _credit_note(self, conn, tenant, state, cn_id, kind, amount, reason, at):
        number = await self._next_number(conn, tenant, "CN", at.year)
        view = credit_note_view(tenant=tenant, id=cn_id, number=number, invoice=state, kind=kind, amount=amount, reason=reason, at=at)
        return "credit_note.created", ev.CreditNoteCreated(credit_note=view)

    async def delete(self, tenant: str, invoice_id: str) -> None:
        async def run(conn):
            state = await self.load_invoice(conn, tenant, invoice_id)
            facts = inv.decide_delete(state)
            await self._release_reference(conn, tenant, invoice_id)
            await self._record_invoice(conn, tenant, state, facts, self.clock())
        await self.transact(run)

    async def import_invoice(self, tenant: str, customer_id: str, fields: ev.DraftFields, *, number: str,
                             issued_on: date, status: str, amount_paid: int) -> dict:
        async def run(conn):
            state = inv.Invoice(id=new_id("inv"))
            full = await self._draft_fields(conn, tenant, fields, customer_id, creating=True)
            facts = inv.decide_import(state, fields=full, number=number, issued_on=issued_on,
                                      status=status, amount_paid=amount_paid)
            await self._claim_number(conn, tenant, number)
            await self._claim_reference(conn, tenant, full.reference, state.id)
            return invoice_view(await self._record_invoice(conn, tenant, state, facts, self.clock()), tenant)
        return await self.transact(run)

    async def get(self, tenant: str, invoice_id: str, as_of: datetime | None = None) -> dict:
        """The invoice now, or exactly as it was at `as_of`, folded from its events."""
        async with self.pool.acquire() as conn:
            view = invoice_view(await self.load_invoice(conn, tenant, invoice_id, as_of=as_of), tenant)
            dunning = await conn.fetchrow("SELECT status, next_retry_at FROM invoice_dunning WHERE invoice_id = $1", invoice_id)
        view["dunningStatus"] = dunning["status"] if dunning else None
        view["nextRetryAt"] = dunning["next_retry_at"] if dunning else None
        return view

    async def history(self, tenant: str, invoice_id: str) -> list[dict]:
        async with self.pool.acquire() as conn:
            await self.load_invoice(conn, tenant, invoice_id, allow_deleted=True)
            stored = await self.store.read_stream(conn, invoice_id)
        return [ev.registry.upcast(s.event).model_dump(mode="json", exclude_none=True) for s in stored]

    # -- facts from other services (called inside the consumer's transaction) -------------------

    async def _invoice_for_event(self, conn, tenant: str, invoice_id: str) -> inv.Invoice | None:
        try:
            return await self.load_invoice(conn, tenant, invoice_id, allow_deleted=True)
        except NotFound:
            return None  # not an invoice of ours (or not of this tenant): nothing to record

    async def on_payment_succeeded(self, conn, tenant: str, invoice_id: str, *, payment_id: str, amount: int,
                                   method: str) -> None:
        state = await self._invoice_for_event(conn, tenant, invoice_id)
        if state is None:
            return
        at = self.clock()
        facts = inv.decide_payment(state, payment_id=payment_id, amount=amount, method=method)
        await self._apply_overpayment(conn, tenant, state, facts, at)
        await self._record_invoice(conn, tenant, state, facts, at)

    async def on_payment_failed(self, conn, tenant: str, invoice_id: str, **kw) -> None:
        state = await self._invoice_for_event(conn, tenant, invoice_id)
        if state is not None:
            await self._record_invoice(conn, tenant, state, inv.decide_payment_failed(state, **kw), self.clock())

    async def on_payment_refunded(self, conn, tenant: str, invoice_id: str, *, payment_id: str, refund_id: str,
                                  amount: int, reason: str | None) -> None:
        state = await self._invoice_for_event(conn, tenant, invoice_id)
        if state is None or not state.exists:
            return
        at, cn_id = self.clock(), new_id("cn")
        facts = inv.decide_refund(state, payment_id=payment_id, refund_id=refund_id, amount=amount, credit_note_id=cn_id)
        note = await self._credit_note(conn, tenant, state, cn_id, "refund", amount, reason or "refund", at)
        await self._record_invoice(conn, tenant, state, facts, at, extra=[note])

    async def on_due_date_passed(self, conn, tenant: str, invoice_id: str, due_date: date) -> None:
        state = await self._invoice_for_event(conn, tenant, invoice_id)
        if state is not None:
            await self._record_invoice(conn, tenant, state, inv.decide_overdue(state, due_date), self.clock())

    async def on_dunning_exhausted(self, conn, tenant: str, invoice_id: str, final_action: str) -> None:
        state = await self._invoice_for_event(conn, tenant, invoice_id)
        if state is None:
            return
        at = self.clock()
        facts = inv.decide_dunning_exhausted(state, final_action)
        await self._return_credits(conn, tenant, state, facts, at)
        await self._record_invoice(conn, tenant, state, facts, at)


class TenantHandlers:
    """Used by the `tenants` CLI; tenant events reach every service through billing.tenants."""

    def __init__(self, pool: asyncpg.Pool, store: EventStore) -> None:
        self.pool, self.store = pool, store

    async def create(self, name: str, mode: str = "test") -> tuple[str, str, str]:
        """Returns (tenant id, key id, the key itself: shown once, stored only hashed)."""
        key = generate_key(mode)
        tenant_id, key_id = new_id("ten"), new_id("key")
        events = decide_create_tenant(name, NewKey(key_id, hash_key(key), key[:12], mode))
        await self._append(tenant_id, 0, events)
        return tenant_id, key_id, key

    async def create_key(self, tenant_id: str, mode: str) -> tuple[str, str]:
        """Returns (key id, the key itself: shown once, stored only hashed)."""
        key, key_id = generate_key(mode), new_id("key")
        async with self.pool.acquire() as conn:
            stored = await self.store.read_stream(conn, tenant_id)
        exists = any(s.event.type == "tenant.created" for s in stored)  # not some other stream's id
        events = decide_create_key(exists, NewKey(key_id, hash_key(key), key[:12], mode))
        await self._append(tenant_id, len(stored), events)
        return key_id, key

    async def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        async with self.pool.acquire() as conn:
            stored = await self.store.read_stream(conn, tenant_id)
        known = {s.event.data["keyId"] for s in stored if s.event.type == "api_key.created"}
        revoked = {s.event.data["keyId"] for s in stored if s.event.type == "api_key.revoked"}
        events = decide_revoke_key(known, revoked, key_id)
        await self._append(tenant_id, len(stored), events)
        return bool(events)

    async def _append(self, tenant_id: str, version: int, events: list[tuple[str, object]]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self.store.append(
                conn, "tenant", tenant_id, version,
                [ev.registry.new_event(t, d, source=SOURCE, subject=tenant_id, tenant_id=tenant_id) for t, d in events],
            )
