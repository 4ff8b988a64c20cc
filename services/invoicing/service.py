"""Invoicing's wiring: its settings, topics, migrations, projections and consumers."""

from pathlib import Path

from shared.service import Service

from .domain.events import STREAM_TOPICS
from .projections.invoice_list import InvoiceList
from .settings import Settings

service = Service(Settings(), topics=STREAM_TOPICS, migrations=Path(__file__).parent / "migrations")
service.projections.append(InvoiceList(service.store))


def create_app():
    from .api.routes import router

    return service.app(router)
