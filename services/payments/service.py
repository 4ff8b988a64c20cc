"""Payments' wiring: its settings, topics, migrations and consumers."""

from pathlib import Path

from shared.service import Service

from .consumers.invoices import on_invoice_event
from .settings import Settings

service = Service(Settings(), topics={"payment": "billing.payments"},
                  migrations=Path(__file__).parent / "migrations")
service.consume("billing.invoices", "invoices")(on_invoice_event)


def create_app():
    return service.app()
