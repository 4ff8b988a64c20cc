"""Webhooks' wiring: its settings, the endpoint-secret vault, migrations, consumers, the delivery
worker, housekeeping, the mailer (when e-mails are enabled) and the routes.
`build` makes an independent instance; the module keeps one for `__main__` and tests."""

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from shared.service import Service
from shared.vault import Vault

from .api import deliveries, routes
from .app.delivery import DeliveryWorker
from .app.emails.mailer import EmailWorker, SmtpConfig
from .app.housekeeping import Housekeeping
from .consumers.events import public_event_handler
from .domain.events import STREAM_TYPE, registry
from .settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class WebhooksService:
    service: Service
    settings: Settings
    vault: Vault  # endpoint secrets at rest

    def app(self) -> FastAPI:
        return self.service.app(routes.make_router(self), deliveries.make_router(self))


def build(settings: Settings | None = None) -> WebhooksService:
    settings = settings or Settings()
    vault = Vault(settings.secrets_keys)
    service = Service(settings, topics={STREAM_TYPE: settings.events_topic}, migrations=MIGRATIONS, registry=registry)
    _consume_public_events(service, settings)
    _register_workers(service, vault)
    return WebhooksService(service, settings, vault)


def _consume_public_events(service: Service, settings: Settings) -> None:
    """One handler for every public topic, each its own consumer group (`billing.` dropped)."""
    on_public_event = public_event_handler(
        emails=settings.emails_enabled,
        public_url=settings.public_url,
        pay_link_secret=settings.pay_link_secret,
        default_locale=settings.email_locale,
        from_address=settings.email_from,
    )
    for topic in settings.public_topics:
        service.consume(topic, topic.removeprefix("billing."))(on_public_event)


def _register_workers(service: Service, vault: Vault) -> None:
    """The background tasks; each factory runs when the service starts, once the pool exists."""

    @service.background("delivery worker")
    def delivery_worker() -> DeliveryWorker:
        s = service.settings
        return DeliveryWorker(
            s.database_url,
            service.pool,
            service.aggregates,
            timeout=s.delivery_timeout_s,
            concurrency=s.delivery_concurrency,
            per_endpoint=s.per_endpoint_concurrency,
            lease_s=s.delivery_lease_s,
            poll_interval=s.poll_interval_s,
            schedule=s.retry_schedule_s,
            disable_after_s=s.disable_after_failing_s,
            allow_private=s.allow_private_urls,
            vault=vault,
        )

    @service.background("housekeeping")
    def housekeeping() -> Housekeeping:
        return Housekeeping(service.pool, retention_days=service.settings.retention_days)

    if service.settings.emails_enabled:

        @service.background("mailer")
        def mailer() -> EmailWorker:
            s = service.settings
            smtp = SmtpConfig(
                s.smtp_host,
                s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password,
                starttls=s.smtp_starttls,
                use_ssl=s.smtp_ssl,
                timeout=s.smtp_timeout_s,
            )
            return EmailWorker(
                s.database_url,
                service.pool,
                smtp,
                lease_s=max(120, s.smtp_timeout_s * 3),
                poll_interval=s.poll_interval_s,
                schedule=s.email_retry_schedule_s,
            )


root = build()
service = root.service


def create_app() -> FastAPI:
    return root.app()
