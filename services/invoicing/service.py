"""Invoicing's wiring: its settings, topics, migrations, projections and consumers."""

from pathlib import Path

from shared.service import Service

from .app.handlers import Invoicing
from .consumers import dunning, payments
from .domain.events import STREAM_TOPICS, registry
from .projections.invoice_list import CreditNotes, CustomerList, InvoiceList
from .settings import Settings

service = Service(Settings(), topics=STREAM_TOPICS, migrations=Path(__file__).parent / "migrations",
                  projections=[InvoiceList(), CustomerList(), CreditNotes()], registry=registry)


def invoicing() -> Invoicing:
    return Invoicing(service.pool, service.store)


service.consume("billing.payments", "payments")(lambda conn, e: payments.on_payment_event(invoicing(), conn, e))
service.consume("billing.dunning", "dunning")(lambda conn, e: dunning.on_dunning_event(invoicing(), conn, e))


def create_app():
    from .api.routes import customers, invoices

    return service.app(invoices.router, customers.router)
