"""Invoicing's wiring: settings, topics, migrations, projections, the payments and dunning
consumers and the routes. `build` makes an independent instance (tests pass their own settings)."""

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from shared import paylinks, timers, topics
from shared.service import Service

from .api.pdf import signed_url
from .api.routes import customers, invoices, plans, subscriptions, tenants
from .app.invoices import Invoicing
from .app.subscriptions import Subscriptions
from .consumers.dunning import make_dunning_consumer
from .consumers.payments import make_payment_consumer
from .domain.events import STREAM_TOPICS, registry
from .projections.invoice_list import CreditNotes, CustomerList, InvoiceList, PlanList, SubscriptionList
from .settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class InvoicingService:
    service: Service

    def handlers(self) -> Invoicing:
        """Made per request and per event: the pool exists only once the service has started."""
        return Invoicing(
            self.service.pool,
            self.service.aggregates,
            pdf_link=self.receipt_pdf_link,
            payment_url=self.payment_url,
            offline_payment_wait_s=self.service.settings.offline_payment_wait_s,
        )

    def receipt_pdf_link(self, tenant: str, invoice_id: str) -> str:
        settings = self.service.settings
        return signed_url(tenant, invoice_id, settings, ttl_s=settings.receipt_pdf_url_ttl_s)["url"]

    def payment_url(self, invoice_id: str) -> str:
        settings = self.service.settings
        return settings.public_url.rstrip("/") + paylinks.lasting_path(settings.pay_link_secret, invoice_id)

    def app(self) -> FastAPI:
        return self.service.app(
            invoices.make_router(self),
            customers.make_router(self),
            tenants.make_router(self),
            plans.make_router(self),
            subscriptions.make_router(self),
        )


def build(settings: Settings | None = None) -> InvoicingService:
    service = Service(
        settings or Settings(),
        topics=dict(STREAM_TOPICS),
        migrations=MIGRATIONS,
        projections=[InvoiceList(), CustomerList(), CreditNotes(), PlanList(), SubscriptionList()],
        registry=registry,
    )
    invoicing = InvoicingService(service)
    service.consume(topics.PAYMENTS, "payments")(make_payment_consumer(invoicing.handlers))
    service.consume(topics.DUNNING, "dunning")(make_dunning_consumer(invoicing.handlers))

    @service.background("timers")
    def timer_runner() -> timers.TimerRunner:
        s = service.settings
        handlers = Subscriptions(invoicing.handlers()).timer_handlers()
        return timers.TimerRunner(s.database_url, service.pool, handlers, poll_interval=s.timer_poll_interval_s)

    return invoicing


root = build()
service = root.service


def create_app() -> FastAPI:
    return root.app()
