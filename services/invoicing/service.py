"""Invoicing's wiring: its settings, topics, migrations, projections and consumers."""

from pathlib import Path

from shared.service import Service

from .api.pdf import signed_url
from .app.handlers import Invoicing
from .consumers import dunning, payments
from .domain.events import STREAM_TOPICS, registry
from .projections.invoice_list import CreditNotes, CustomerList, InvoiceList
from .settings import Settings

service = Service(Settings(), topics=STREAM_TOPICS, migrations=Path(__file__).parent / "migrations",
                  projections=[InvoiceList(), CustomerList(), CreditNotes()], registry=registry)


def receipt_pdf_link(tenant: str, invoice_id: str) -> str:
    return signed_url(tenant, invoice_id, service.settings, ttl_s=service.settings.receipt_pdf_url_ttl_s)["url"]


def invoicing() -> Invoicing:
    return Invoicing(service.pool, service.store, pdf_link=receipt_pdf_link)


service.consume("billing.payments", "payments")(lambda conn, e: payments.on_payment_event(invoicing(), conn, e))
service.consume("billing.dunning", "dunning")(lambda conn, e: dunning.on_dunning_event(invoicing(), conn, e))


def create_app():
    from .api.routes import customers, invoices

    return service.app(invoices.router, customers.router)
