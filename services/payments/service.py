"""Payments' wiring: settings, topics, migrations, projections, consumers, the charge worker and
the sandbox provider (its API and callback sender)."""

from pathlib import Path

from shared.service import Service
from shared.vault import Vault

from .app.accounts import Accounts
from .app.handlers import Payments
from .app.refunds import Refunds
from .app.worker import ChargeWorker
from .consumers.dunning import on_dunning_event
from .consumers.invoices import on_invoice_event
from .domain.events import registry
from .projections.payment_list import PaymentList
from .settings import Settings

settings = Settings()
service = Service(settings, topics={"payment": settings.payments_topic},
                  migrations=Path(__file__).parent / "migrations", registry=registry)
service.projections.append(PaymentList())
vault = Vault(settings.credentials_keys)
payments = Payments(service, Accounts(vault, settings), vault)
refunds = Refunds(payments)

service.consume(settings.invoices_topic, "invoices")(on_invoice_event)
service.consume(settings.dunning_topic, "dunning")(on_dunning_event)


@service.background("charge worker")
def charge_worker() -> ChargeWorker:
    return ChargeWorker(payments, refunds, settings.database_url, poll_interval=settings.poll_interval_s / 2)


if settings.sandbox_enabled:
    from .providers.sandbox_server import CallbackSender

    @service.background("sandbox callbacks")
    def sandbox_callbacks() -> CallbackSender:
        return CallbackSender(service.pool, settings.sandbox_webhook_secret)


def create_app():
    from .api.pay import router as pay_router
    from .api.routes import router
    from .providers.sandbox_server import make_router

    routers = [router, pay_router]
    if settings.sandbox_enabled:
        routers.append(make_router(lambda: service.pool, settings))
    return service.app(*routers)
