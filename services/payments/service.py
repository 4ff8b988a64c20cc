"""Payments' wiring: settings, topics, migrations, projections, consumers, the charge worker and
the sandbox provider (its API and callback sender). `build` makes an independent instance; the
routes and consumers are closures over it, so no module of the service imports this one."""

from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, FastAPI

from shared.service import Service
from shared.vault import Vault

from .api import pay, routes
from .app.accounts import Accounts
from .app.handlers import Payments
from .app.refunds import Refunds
from .app.worker import ChargeWorker
from .consumers.dunning import make_dunning_consumer
from .consumers.invoices import make_invoice_consumer
from .domain.events import registry
from .projections.payment_list import PaymentList
from .providers import sandbox_server
from .settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class PaymentsService:
    """One payments instance's object graph (`Payments` is its application layer, app/handlers.py)."""

    settings: Settings
    service: Service
    vault: Vault
    payments: Payments
    refunds: Refunds

    def routers(self) -> list[APIRouter]:
        routers = [routes.make_router(self), pay.make_router(self)]
        if self.settings.sandbox_enabled:  # the sandbox provider's own API, served by this process
            routers.append(sandbox_server.make_router(lambda: self.service.pool, self.settings))
        return routers

    def app(self) -> FastAPI:
        return self.service.app(*self.routers())


def build(settings: Settings | None = None) -> PaymentsService:
    settings = settings or Settings()
    service = Service(
        settings,
        topics={"payment": settings.payments_topic},
        migrations=MIGRATIONS,
        projections=[PaymentList()],
        registry=registry,
    )
    vault = Vault(settings.credentials_keys)
    payments = Payments(service, Accounts(vault, settings), vault)
    root = PaymentsService(settings, service, vault, payments, Refunds(payments))
    service.consume(settings.invoices_topic, "invoices")(make_invoice_consumer(payments))
    service.consume(settings.dunning_topic, "dunning")(make_dunning_consumer(payments))
    register_background(root)
    return root


def register_background(root: PaymentsService) -> None:
    """The charge worker; the sandbox's callback sender only when the sandbox is enabled."""
    settings, service = root.settings, root.service

    @service.background("charge worker")
    def charge_worker() -> ChargeWorker:
        return ChargeWorker(
            root.payments, root.refunds, settings.database_url, poll_interval=settings.poll_interval_s / 2
        )

    if settings.sandbox_enabled:

        @service.background("sandbox callbacks")
        def sandbox_callbacks() -> sandbox_server.CallbackSender:
            return sandbox_server.CallbackSender(service.pool, settings.sandbox_webhook_secret)


root = build()
service = root.service


def create_app() -> FastAPI:
    return root.app()
