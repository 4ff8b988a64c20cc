"""Invoicing's commands and reads over its two aggregates, invoices and customers. Each command
runs in one transaction: load the streams it needs, decide (domain/), record each fact with the
resource as it is after it (app/views.py) and append, plus the bookkeeping rows
(app/repository.py). A version conflict reruns the whole command. Facts from other services are
in app/reactions.py, tenants and keys in app/tenants.py.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import asyncpg

from shared.aggregate import Aggregates, retry_on_conflict
from shared.errors import Conflict, NotFound, Refused
from shared.ids import new_id
from shared.logs import get_logger

from ..domain import customer as cust
from ..domain import events as ev
from ..domain import invoice as inv
from ..domain import subscription as sb
from . import repository as repo
from .views import credit_note_view, customer_view, invoice_view, subscription_view, voided_credit_note_view

log = get_logger(__name__)
T = TypeVar("T")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Invoicing:
    def __init__(
        self,
        pool: asyncpg.Pool,
        aggregates: Aggregates,
        clock: Clock = utcnow,
        pdf_link: Callable[[str, str], str] | None = None,
        payment_url: Callable[[str], str] | None = None,
        offline_payment_wait_s: float = 0.0,
    ) -> None:
        """`pdf_link(tenant, invoice_id)` signs the PDF link that invoice.paid carries;
        `payment_url(invoice_id)` the lasting link to the hosted page that pays the invoice;
        `offline_payment_wait_s`: how long mark-paid waits for payments to record its payment."""
        self.pool, self.aggregates, self.clock, self.pdf_link = pool, aggregates, clock, pdf_link
        self.payment_url = payment_url
        self.offline_payment_wait_s = offline_payment_wait_s

    def view(self, state: inv.Invoice, tenant: str) -> dict:
        """The invoice as the API and its events show it; once finalized, with its paymentUrl."""
        url = self.payment_url(state.id) if self.payment_url and state.finalized_at else None
        return invoice_view(state, tenant, payment_url=url)

    async def transact(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run fn in a transaction; on a concurrent write to the same stream, reload and retry."""
        return await retry_on_conflict(
            self.pool,
            fn,
            gave_up=lambda: Conflict("concurrent_update", "The invoice changed while this request ran; retry."),
        )

    # -- loading ------------------------------------------------------------------------------

    async def load_invoice(
        self, conn, tenant: str, invoice_id: str, *, as_of: datetime | None = None, allow_deleted: bool = False
    ) -> inv.Invoice:
        stream = await self.aggregates.load(conn, invoice_id, as_of=as_of)
        if not stream.is_a("invoice", tenant):
            raise NotFound("invoice", invoice_id)  # another tenant's invoice does not exist here
        state = inv.fold(stream.history, invoice_id)
        if state.deleted and not allow_deleted:
            raise NotFound("invoice", invoice_id)
        return state

    async def load_customer(self, conn, tenant: str, customer_id: str, *, field: str | None = None) -> cust.Customer:
        stream = await self.aggregates.load(conn, customer_id)
        state = cust.fold(stream.history, customer_id) if stream.is_a("customer", tenant) else None
        if state is None or state.deleted:
            if field:
                raise Refused("customer_not_found", f"No such customer: '{customer_id}'", field=field)
            raise NotFound("customer", customer_id)
        return state

    # -- recording ----------------------------------------------------------------------------

    async def record(
        self, conn, tenant: str, stream_type: str, state, facts, at: datetime, *, evolve, snapshot: tuple[str, Callable]
    ):
        """Fold each fact into the state, put the resource as it is after it into the event's
        data (`snapshot` = (key, view)), and append them all at the state's version."""
        key, view = snapshot
        decided, s = [], state
        for event_type, fact in facts:
            s = evolve(s, event_type, fact, subject=state.id, at=at)
            # A credit note's events carry the note, every other event the resource after it.
            data = fact.dump() if event_type.startswith("credit_note.") else {**fact.dump(), key: view(s, tenant)}
            decided.append((event_type, type(fact).model_validate(data)))
        await self.aggregates.append(conn, stream_type, state.id, state.version, decided, tenant_id=tenant, at=at)
        return s

    async def record_invoice(
        self,
        conn,
        tenant: str,
        state: inv.Invoice,
        facts: list[inv.Fact],
        at: datetime,
        extra: list[tuple[str, ev.Contract]] = (),
    ) -> inv.Invoice:
        if self.pdf_link:
            facts = [
                (t, f.model_copy(update={"pdf_url": self.pdf_link(tenant, state.id)}) if t == "invoice.paid" else f)
                for t, f in facts
            ]
        after = await self.record(
            conn, tenant, "invoice", state, [*facts, *extra], at, evolve=inv.evolve, snapshot=("invoice", self.view)
        )
        await self._tell_subscription(conn, tenant, after, [t for t, _ in facts], at)
        return after

    async def _tell_subscription(self, conn, tenant: str, invoice: inv.Invoice, types: list[str], at: datetime) -> None:
        """A subscription's latest invoice failing collection makes it PAST_DUE; paid, it is whole again."""
        sub_id = invoice.fields.subscription_id
        if not sub_id or not ({"invoice.payment_failed", "invoice.paid"} & set(types)):
            return
        stream = await self.aggregates.load(conn, sub_id)
        if not stream.is_a("subscription", tenant):
            return
        state = sb.fold(stream.history, sub_id)
        facts = sb.decide_payment_state(state, invoice_id=invoice.id or "", failed="invoice.paid" not in types)
        await self.record(
            conn,
            tenant,
            "subscription",
            state,
            facts,
            at,
            evolve=sb.evolve,
            snapshot=("subscription", subscription_view),
        )

    async def record_customer(
        self, conn, tenant: str, state: cust.Customer, facts: list[cust.Fact], at: datetime
    ) -> cust.Customer:
        return await self.record(
            conn, tenant, "customer", state, facts, at, evolve=cust.evolve, snapshot=("customer", customer_view)
        )

    async def apply_overpayment(
        self, conn, tenant: str, state: inv.Invoice, facts: list[inv.Fact], at: datetime
    ) -> None:
        for event_type, fact in facts:
            if event_type == "invoice.payment_received" and fact.overpayment > 0:
                customer = await self.load_customer(conn, tenant, state.fields.customer.id)
                await self.record_customer(
                    conn,
                    tenant,
                    customer,
                    cust.decide_add_credit(
                        customer, fact.overpayment, state.fields.currency, invoice_id=state.id, reason="overpayment"
                    ),
                    at,
                )

    async def add_credit(self, conn, tenant: str, customer_id: str, amount: int, currency: str, at, reason: str):
        """`amount` to the customer's balance in `currency`, which their next invoices use first."""
        if amount > 0:
            customer = await self.load_customer(conn, tenant, customer_id)
            facts = cust.decide_add_credit(customer, amount, currency, invoice_id=None, reason=reason)
            await self.record_customer(conn, tenant, customer, facts, at)

    # -- customers ----------------------------------------------------------------------------

    async def create_customer(self, tenant: str, fields: ev.CustomerFields) -> dict:
        async def run(conn):
            state = cust.Customer(id=new_id("cust"))
            facts = cust.decide_create(state, fields)
            await repo.claim_external_id(conn, tenant, fields.external_id, state.id)
            return customer_view(await self.record_customer(conn, tenant, state, facts, self.clock()), tenant)

        return await self.transact(run)

    async def _customer_by_email(self, conn, tenant: str, fields: ev.CustomerFields) -> str:
        """The tenant's oldest customer with this e-mail, or a new one. Two requests naming the
        same new e-mail at once make one customer: the second waits on the e-mail's lock and
        then finds the first's (customer_list is written in the creating transaction)."""
        await self.aggregates.store.hold(conn, f"customer-email:{tenant}:{fields.email}", exclusive=True)
        if found := await repo.customer_with_email(conn, tenant, fields.email):
            return found
        state = cust.Customer(id=new_id("cust"))
        facts = cust.decide_create(state, fields)
        await repo.claim_external_id(conn, tenant, fields.external_id, state.id)
        await self.record_customer(conn, tenant, state, facts, self.clock())
        return state.id

    async def update_customer(self, tenant: str, customer_id: str, changes: ev.CustomerFields) -> dict:
        async def run(conn):
            state = await self.load_customer(conn, tenant, customer_id)
            facts = cust.decide_update(state, changes)
            if "external_id" in changes.model_fields_set and changes.external_id != state.fields.external_id:
                await repo.release_external_id(conn, tenant, customer_id)
                await repo.claim_external_id(conn, tenant, changes.external_id, customer_id)
            return customer_view(await self.record_customer(conn, tenant, state, facts, self.clock()), tenant)

        return await self.transact(run)

    async def delete_customer(self, tenant: str, customer_id: str) -> None:
        async def run(conn):
            # Invoices being written for them commit first, and none starts until this one has.
            await self.aggregates.store.hold(conn, customer_id, exclusive=True)
            state = await self.load_customer(conn, tenant, customer_id)
            facts = cust.decide_delete(
                state,
                await repo.unsettled_invoices(conn, tenant, customer_id),
                await repo.running_subscriptions(conn, tenant, customer_id),
            )
            await repo.release_external_id(conn, tenant, customer_id)
            await self.record_customer(conn, tenant, state, facts, self.clock())

        await self.transact(run)

    async def get_customer(self, tenant: str, customer_id: str) -> dict:
        async with self.pool.acquire() as conn:
            return customer_view(await self.load_customer(conn, tenant, customer_id), tenant)

    # -- invoices -----------------------------------------------------------------------------

    async def _draft_fields(
        self,
        conn,
        tenant: str,
        fields: ev.DraftFields,
        customer_id: str | None,
        *,
        creating: bool,
        at: datetime | None = None,
    ) -> ev.DraftFields:
        """Fill in what comes from the customer: its snapshot, and defaults on creation."""
        if customer_id is None:
            return fields
        await self.aggregates.store.hold(conn, customer_id)  # not deleted until this invoice is written
        customer = await self.load_customer(conn, tenant, customer_id, field="customerId")
        c = customer.fields
        update = {"customer": ev.CustomerRef(id=customer.id, name=c.name, email=c.email)}
        if creating:
            if fields.currency is None:
                update["currency"] = c.currency or "USD"
            if fields.due_date is None:
                update["due_date"] = (at or self.clock()).date() + timedelta(days=c.net_term_days or 0)
            if fields.auto_collection is None:
                update["auto_collection"] = bool(c.auto_collection)
            if fields.allow_partial_payments is None:
                update["allow_partial_payments"] = True
        merged = fields.model_copy(update=update)
        # model_copy does not mark fields as set; re-validate so PATCH sees what changed.
        return ev.DraftFields.model_validate(
            {**fields.model_dump(exclude_unset=True), **{k: getattr(merged, k) for k in update}}
        )

    async def create_invoice(
        self, tenant: str, customer_id: str | None, fields: ev.DraftFields, *, customer: ev.CustomerFields | None = None
    ) -> dict:
        """For `customer_id`, or else for the customer with `customer`'s e-mail (made from it if none)."""

        async def run(conn):
            state = inv.Invoice(id=new_id("inv"))
            owner = customer_id or await self._customer_by_email(conn, tenant, customer)
            full = await self._draft_fields(conn, tenant, fields, owner, creating=True)
            facts = inv.decide_create(state, full)
            await repo.claim_reference(conn, tenant, full.reference, state.id)
            return self.view(await self.record_invoice(conn, tenant, state, facts, self.clock()), tenant)

        return await self.transact(run)

    async def issue(self, conn, tenant: str, customer_id: str, fields: ev.DraftFields, at: datetime) -> dict:
        """Create and finalize an invoice on the caller's connection (a subscription's period):
        collected automatically when the customer pays automatically, else sent to them."""
        state = inv.Invoice(id=new_id("inv"))
        full = await self._draft_fields(conn, tenant, fields, customer_id, creating=True, at=at)
        state = await self.record_invoice(conn, tenant, state, inv.decide_create(state, full), at)
        number, credit, customer = await self._finalizing(conn, tenant, state, at)
        if full.auto_collection:
            facts = inv.decide_finalize(state, number=number, credit_available=credit)
        else:
            facts = inv.decide_send(state, number=number, credit_available=credit)
        await self._after_finalize(conn, tenant, state, facts, customer, at)
        return self.view(await self.record_invoice(conn, tenant, state, facts, at), tenant)

    async def update_invoice(
        self, tenant: str, invoice_id: str, customer_id: str | None, changes: ev.DraftFields
    ) -> dict:
        async def run(conn):
            state = await self.load_invoice(conn, tenant, invoice_id)
            full = await self._draft_fields(conn, tenant, changes, customer_id, creating=False)
            facts = inv.decide_update(state, full)
            if "reference" in full.model_fields_set:
                await repo.release_reference(conn, tenant, invoice_id)
                await repo.claim_reference(conn, tenant, full.reference, invoice_id)
            return self.view(await self.record_invoice(conn, tenant, state, facts, self.clock()), tenant)

        return await self.transact(run)

    async def add_charge(self, tenant: str, invoice_id: str, line: ev.LineData) -> dict:
        async def run(conn):
            state = await self.load_invoice(conn, tenant, invoice_id)
            return self.view(
                await self.record_invoice(conn, tenant, state, inv.decide_add_charge(state, line), self.clock()), tenant
            )

        return await self.transact(run)

    async def _finalizing(self, conn, tenant: str, state: inv.Invoice, at: datetime):
        """Number and credit for a draft about to be finalized (None, 0 otherwise)."""
        if state.status != inv.DRAFT:
            return None, 0, None
        number = await repo.next_number(conn, tenant, "INV", at.year)
        try:
            customer = await self.load_customer(conn, tenant, state.fields.customer.id)
        except NotFound:  # invoices from before customers existed name an id with no stream
            return number, 0, None
        return number, customer.credit.get(state.fields.currency, 0), customer

    async def _after_finalize(self, conn, tenant, state, facts, customer, at) -> None:
        for event_type, fact in facts:
            if event_type == "invoice.finalized" and fact.credits_applied:
                await self.record_customer(
                    conn,
                    tenant,
                    customer,
                    cust.decide_apply_credit(customer, fact.credits_applied, state.fields.currency, state.id),
                    at,
                )

    async def finalize(self, tenant: str, invoice_id: str) -> dict:
        async def run(conn):
            at = self.clock()
            state = await self.load_invoice(conn, tenant, invoice_id)
            if state.status != inv.DRAFT:
                raise inv.InvalidTransition("finalize", state.status)
            number, credit, customer = await self._finalizing(conn, tenant, state, at)
            facts = inv.decide_finalize(state, number=number, credit_available=credit)
            await self._after_finalize(conn, tenant, state, facts, customer, at)
            return self.view(await self.record_invoice(conn, tenant, state, facts, at), tenant)

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
            return self.view(await self.record_invoice(conn, tenant, state, facts, at), tenant)

        return await self.transact(run)

    async def record_offline_payment(
        self,
        tenant: str,
        invoice_id: str,
        *,
        amount: int | None,
        method: str,
        reference: str | None,
        paid_on: date | None,
    ) -> dict:
        async def run(conn):
            at, payment_id = self.clock(), new_id("pay")
            state = await self.load_invoice(conn, tenant, invoice_id)
            facts = inv.decide_payment(
                state,
                payment_id=payment_id,
                amount=amount or state.amount_due,
                method=method,
                reference=reference,
                paid_on=paid_on,
                offline=True,
            )
            await self.apply_overpayment(conn, tenant, state, facts, at)
            await repo.insert_offline_payment(conn, payment_id, tenant, invoice_id)
            return {
                **self.view(await self.record_invoice(conn, tenant, state, facts, at), tenant),
                "paymentId": payment_id,
            }

        view = await self.transact(run)
        await self._wait_until_recorded(view["paymentId"])
        return view

    async def _wait_until_recorded(self, payment_id: str) -> None:
        """Payments records the `manual` payment when it hears invoice.payment_received; wait,
        bounded, for its payment.succeeded to come back, so GET /api/payments shows the payment
        once this call answers. Past the bound (payments or Kafka away) the answer goes anyway:
        the payment follows when they are back."""
        deadline = asyncio.get_running_loop().time() + self.offline_payment_wait_s
        delay = 0.005
        while asyncio.get_running_loop().time() < deadline:
            if await repo.forget_recorded_offline_payment(self.pool, payment_id):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        if self.offline_payment_wait_s:
            log.warning("payments has not recorded the offline payment yet", payment_id=payment_id)

    async def void(self, tenant: str, invoice_id: str, reason: str | None) -> dict:
        async def run(conn):
            at = self.clock()
            state = await self.load_invoice(conn, tenant, invoice_id)
            facts = inv.decide_void(state, reason)
            await self.return_credits(conn, tenant, state, facts, at)
            return self.view(await self.record_invoice(conn, tenant, state, facts, at), tenant)

        return await self.transact(run)

    async def return_credits(self, conn, tenant, state, facts, at) -> None:
        for event_type, fact in facts:
            if event_type == "invoice.voided" and fact.credits_returned:
                customer = await self.load_customer(conn, tenant, state.fields.customer.id)
                await self.record_customer(
                    conn,
                    tenant,
                    customer,
                    cust.decide_add_credit(
                        customer,
                        fact.credits_returned,
                        state.fields.currency,
                        invoice_id=state.id,
                        reason="invoice voided",
                    ),
                    at,
                )

    async def write_off(self, tenant: str, invoice_id: str, reason: str | None) -> dict:
        async def run(conn):
            at = self.clock()
            state = await self.load_invoice(conn, tenant, invoice_id)
            cn_id = new_id("cn")
            facts = inv.decide_write_off(state, cn_id)
            note = await self.new_credit_note(
                conn, tenant, state, cn_id, "adjustment", state.amount_due, "write_off", reason or "written off", at
            )
            return self.view(await self.record_invoice(conn, tenant, state, facts, at, extra=[note]), tenant)

        return await self.transact(run)

    async def new_credit_note(self, conn, tenant, state, cn_id, kind, amount, reason_code, reason, at):
        number = await repo.next_number(conn, tenant, "CN", at.year)
        view = credit_note_view(
            tenant=tenant,
            id=cn_id,
            number=number,
            invoice=state,
            kind=kind,
            amount=amount,
            reason_code=reason_code,
            reason=reason,
            at=at,
        )
        return "credit_note.created", ev.CreditNoteCreated(credit_note=view)

    # -- credit notes made by hand ------------------------------------------------------------

    async def create_credit_note(
        self, tenant: str, invoice_id: str, *, amount: int, reason_code: str, reason: str | None
    ) -> dict:
        """An adjustment credit note: `amount` of the invoice's amount due is no longer owed."""

        async def run(conn):
            at = self.clock()
            try:
                state = await self.load_invoice(conn, tenant, invoice_id)
            except NotFound:
                raise Refused("invoice_not_found", f"No such invoice: '{invoice_id}'", field="invoiceId") from None
            cn_id = new_id("cn")
            facts = inv.decide_adjust(state, credit_note_id=cn_id, amount=amount, reason_code=reason_code)
            event = await self.new_credit_note(
                conn, tenant, state, cn_id, "adjustment", amount, reason_code, reason, at
            )
            await self.record_invoice(conn, tenant, state, facts, at, extra=[event])
            return event[1].credit_note

        return await self.transact(run)

    async def void_credit_note(self, tenant: str, credit_note_id: str) -> dict:
        """The adjustment taken back: its amount is due again."""

        async def run(conn):
            at = self.clock()
            found = await repo.credit_note(conn, tenant, credit_note_id)
            if found is None:
                raise NotFound("credit note", credit_note_id)
            state = await self.load_invoice(conn, tenant, found["invoiceId"])
            facts = inv.decide_void_credit_note(state, credit_note_id)
            voided = voided_credit_note_view(state.credit_notes[credit_note_id], at)
            await self.record_invoice(
                conn, tenant, state, facts, at, extra=[("credit_note.voided", ev.CreditNoteVoided(credit_note=voided))]
            )
            return voided

        return await self.transact(run)

    async def delete(self, tenant: str, invoice_id: str) -> None:
        async def run(conn):
            state = await self.load_invoice(conn, tenant, invoice_id)
            facts = inv.decide_delete(state)
            await repo.release_reference(conn, tenant, invoice_id)
            await self.record_invoice(conn, tenant, state, facts, self.clock())

        await self.transact(run)

    async def import_invoice(
        self,
        tenant: str,
        customer_id: str,
        fields: ev.DraftFields,
        *,
        number: str,
        issued_on: date,
        status: str,
        amount_paid: int,
    ) -> dict:
        async def run(conn):
            state = inv.Invoice(id=new_id("inv"))
            full = await self._draft_fields(conn, tenant, fields, customer_id, creating=True)
            facts = inv.decide_import(
                state, fields=full, number=number, issued_on=issued_on, status=status, amount_paid=amount_paid
            )
            await repo.claim_number(conn, tenant, number)
            await repo.claim_reference(conn, tenant, full.reference, state.id)
            return self.view(await self.record_invoice(conn, tenant, state, facts, self.clock()), tenant)

        return await self.transact(run)

    async def get(self, tenant: str, invoice_id: str, as_of: datetime | None = None) -> dict:
        """The invoice now, or exactly as it was at `as_of`, folded from its events."""
        async with self.pool.acquire() as conn:
            view = self.view(await self.load_invoice(conn, tenant, invoice_id, as_of=as_of), tenant)
            return repo.show_dunning(view, await repo.dunning_of(conn, [invoice_id]))

    async def history(self, tenant: str, invoice_id: str) -> list[dict]:
        async with self.pool.acquire() as conn:
            await self.load_invoice(conn, tenant, invoice_id, allow_deleted=True)
            stored = (await self.aggregates.load(conn, invoice_id)).stored
        return [ev.registry.upcast(s.event).model_dump(mode="json", exclude_none=True) for s in stored]
