"""Webhooks' wiring: its settings, migrations, consumers and the delivery worker."""

from pathlib import Path

from shared.service import Service

from .app.delivery import DeliveryWorker
from .consumers.events import PUBLIC_TOPICS, on_public_event
from .settings import Settings

service = Service(Settings(), topics={}, migrations=Path(__file__).parent / "migrations")
for topic in PUBLIC_TOPICS:
    service.consume(topic, topic.removeprefix("billing."))(on_public_event)


@service.background("delivery worker")
def delivery_worker() -> DeliveryWorker:
    s = service.settings
    return DeliveryWorker(s.database_url, service.pool, timeout=s.delivery_timeout_s,
                          poll_interval=s.poll_interval_s)


def create_app():
    from .api.routes import router

    return service.app(router)
