"""Dunning's wiring: settings, topics, migrations, consumers, the timer engine and the routes.
`build` makes an independent instance (tests pass their own settings and a ManualClock)."""

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from shared.service import Service

from .app.clock import Clock, ManualClock, SystemClock
from .app.engine import TimerEngine
from .app.handlers import DunningHandlers
from .app.simulated_clocks import TestClocks
from .consumers.invoices import make_invoice_consumer
from .consumers.payments import make_payment_consumer
from .domain.events import STREAM_TYPE, registry
from .settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class DunningService:
    service: Service
    handlers: DunningHandlers
    clock: Clock
    test_clocks: TestClocks
    engine: TimerEngine | None = None  # created when the service starts

    def app(self) -> FastAPI:
        from .api.routes import make_routers

        return self.service.app(*make_routers(self))


def build(settings: Settings | None = None, clock: Clock | None = None) -> DunningService:
    settings = settings or Settings()
    clock = clock or SystemClock()
    service = Service(settings, topics={STREAM_TYPE: settings.dunning_topic}, migrations=MIGRATIONS, registry=registry)
    handlers = DunningHandlers(service.aggregates, clock)
    dunning = DunningService(service, handlers, clock, TestClocks(lambda: service.pool, clock))
    service.consume(settings.invoices_topic, "invoices")(make_invoice_consumer(handlers))
    service.consume(settings.payments_topic, "payments")(make_payment_consumer(handlers))

    @service.background("timer engine")
    def timer_engine() -> TimerEngine:
        dunning.engine = TimerEngine(
            settings.database_url, service.pool, handlers, clock, poll_interval=settings.timer_poll_interval_s
        )
        if isinstance(clock, ManualClock):
            clock.on_change(dunning.engine.wake)
        return dunning.engine

    return dunning


root = build()
service = root.service


def create_app() -> FastAPI:
    return root.app()
