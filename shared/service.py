"""Wires one service process: FastAPI for HTTP, FastStream subscribers for Kafka, the outbox
relay and the projection runners, all sharing one asyncpg pool. Every service is built the same
way; its `__main__` only says which routes, consumers and projections it has.
"""

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg
import structlog
import uvicorn
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared import auth, deadletters
from shared.aggregate import Aggregates
from shared.db import create_pool, migrate
from shared.eventstore import EventStore
from shared.guards import NulGuardMiddleware
from shared.http_errors import install_error_handlers
from shared.idempotency import IdempotencyMiddleware
from shared.inbox import Delivery, Handler, InboxConsumer
from shared.logs import CorrelationMiddleware, configure_logging, get_logger
from shared.outbox import OutboxRelay
from shared.projections import Projection, ProjectionRunner
from shared.ratelimit import Limit, RateLimitMiddleware
from shared.registry import EventRegistry
from shared.settings import ServiceSettings
from shared.topics import TENANTS

log = get_logger(__name__)
BATCH_MAX_RECORDS = 200
BATCH_WAIT_MS = 25  # an idle consumer polls every 2 x 25 ms, so a lone event waits at most that
GC_YOUNG_THRESHOLD = 20_000  # allocations between young collections (CPython's default: 700)

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


# Generic in its settings class, so `service.settings` has the service's own fields.
class Service(Generic[SettingsT]):
    def __init__(
        self,
        settings: SettingsT,
        *,
        topics: dict[str, str],
        migrations: Path | None = None,
        projections: list[Projection] | None = None,
        registry: EventRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.service_name
        self.source = f"/billstream/{self.name}"
        self.store = EventStore(topics)
        self.migrations = migrations
        self.projections = projections or []
        self.registry = registry or EventRegistry()
        self.aggregates = Aggregates(self.store, self.registry, self.source, tuple(self.projections))
        self.consumed_topics: list[str] = []
        self.broker = KafkaBroker(settings.kafka_bootstrap, logger=None)
        self.consumers: dict[str, InboxConsumer] = {}
        self._pool: asyncpg.Pool | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.relay: OutboxRelay | None = None
        self.runner: ProjectionRunner | None = None
        self._background: list[tuple[str, Callable[[], Any]]] = []
        self.consume(TENANTS, "tenants")(auth.project_tenant_event)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name} has not started")
        return self._pool

    # -- Kafka consumers ----------------------------------------------------------------------

    def consume(self, topic: str, name: str) -> Callable[[Handler], Handler]:
        """Decorator: handle every event on `topic` idempotently, as consumer group
        `<service>.<name>`. The offset is committed only after the handler's transaction."""

        def register(handler: Handler) -> Handler:
            consumer = InboxConsumer(f"{self.name}.{name}", handler)
            self.consumers[consumer.name] = consumer
            self.consumed_topics.append(topic)

            # Batches: one poll, one offset commit and one pass through FastStream per batch
            # instead of per message. Each event still commits in its own inbox transaction.
            # `process` returns only once its event is settled: a transient failure is retried
            # in place, so the batch (and its partitions) waits, in order, and the offsets are
            # committed after the last transaction; a deterministic one is parked.
            @self.broker.subscriber(
                topic,
                group_id=consumer.name,
                auto_offset_reset="earliest",
                ack_policy=AckPolicy.NACK_ON_ERROR,
                batch=True,
                max_records=BATCH_MAX_RECORDS,
                batch_timeout_ms=BATCH_WAIT_MS,
            )
            async def _on_batch(message: KafkaMessage) -> None:
                for record in message.raw_message:
                    with structlog.contextvars.bound_contextvars():
                        await consumer.process(
                            self.pool, record.value or b"", Delivery(topic, record.partition, record.offset)
                        )

            return handler

        return register

    def background(self, name: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
        """Decorator: a factory, called at start, for an object whose `run()` loops forever."""

        def register(factory: Callable[[], Any]) -> Callable[[], Any]:
            self._background.append((name, factory))
            return factory

        return register

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        applied = await migrate(s.database_url, *([self.migrations] if self.migrations else []))
        if applied:
            log.info("migrations applied", ids=applied)
        self._pool = await create_pool(s.database_url, min_size=s.db_pool_min, max_size=s.db_pool_max)
        self.relay = OutboxRelay(s.database_url, self.pool, s.kafka_bootstrap, poll_interval=s.poll_interval_s)
        self.runner = ProjectionRunner(
            s.database_url, self.pool, self.store, self.projections, poll_interval=s.poll_interval_s
        )
        self._tasks = [asyncio.create_task(self._supervise("outbox relay", self.relay.run))]
        if self.projections:
            self._tasks.append(asyncio.create_task(self._supervise("projections", self.runner.run)))
        for name, factory in self._background:
            self._tasks.append(asyncio.create_task(self._supervise(name, factory().run)))
        await self.broker.start()
        log.info("service started", consumers=sorted(self.consumers))

    async def stop(self) -> None:
        await self.broker.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()

    async def _supervise(self, what: str, run: Callable[[], Awaitable[None]]) -> None:
        """Restart a background loop that died (for example the database restarted)."""
        while True:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged; the loop is restarted whatever killed it
                log.error(f"{what} stopped, restarting", error=repr(exc))
                await asyncio.sleep(1)

    async def ready(self) -> dict[str, bool]:
        checks = {"database": False, "kafka": False}
        with contextlib.suppress(Exception):
            checks["database"] = await asyncio.wait_for(self.pool.fetchval("SELECT true"), 2)
        with contextlib.suppress(Exception):
            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, request_timeout_ms=2000)
            await asyncio.wait_for(admin.start(), 3)
            try:
                checks["kafka"] = bool(await asyncio.wait_for(admin.list_topics(), 3))
            finally:
                await admin.close()
        return checks

    async def failures(self) -> dict[str, Any]:
        """For /ready's body: parked dead letters and what is being retried right now. Neither
        makes the service unready (a database that is away already does)."""
        parked = None
        with contextlib.suppress(Exception):
            parked = await asyncio.wait_for(deadletters.parked_count(self.pool), 2)
        retrying = [c.retrying for c in self.consumers.values() if c.retrying]
        retrying += list(self.runner.retrying.values()) if self.runner else []
        return {"deadLetters": {"parked": parked}, "retrying": [r.as_json() for r in retrying]}

    # -- HTTP ---------------------------------------------------------------------------------

    async def tenant(self, request: Request) -> str:
        """FastAPI dependency: the authenticated tenant id (401 otherwise)."""
        return await auth.authenticate(request, self.pool)

    def app(self, *routers: APIRouter) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await self.start()
            # What start-up allocated lives as long as the process: keep it out of every
            # collection, and collect the young generation less often (cyclic garbage is rare
            # here; reference counting frees almost everything).
            gc.freeze()
            gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
            try:
                yield
            finally:
                await self.stop()

        app = FastAPI(title=f"Billstream {self.name}", lifespan=lifespan)
        install_error_handlers(app)

        # The last added runs first: correlation ids are bound for everything below them.
        s = self.settings
        app.add_middleware(IdempotencyMiddleware, pool=lambda: self.pool)
        app.add_middleware(
            RateLimitMiddleware,
            pool=lambda: self.pool,
            enabled=s.rate_limits,
            per_key=Limit(s.rate_limit_per_key_per_s, s.rate_limit_per_key_burst),
            per_address=Limit(s.rate_limit_per_address_per_s, s.rate_limit_per_address_burst),
        )
        app.add_middleware(NulGuardMiddleware)
        app.add_middleware(CorrelationMiddleware)

        @app.get("/health", include_in_schema=False)
        async def health() -> dict[str, Any]:
            return {"status": "ok", "service": self.name}

        @app.get("/ready", include_in_schema=False)
        async def ready() -> JSONResponse:
            checks = await self.ready()
            ok = all(checks.values())
            return JSONResponse({"ready": ok, "checks": checks, **await self.failures()}, 200 if ok else 503)

        for router in routers:
            app.include_router(router)
        return app

    def serve(self, app: FastAPI) -> None:
        s = self.settings
        configure_logging(self.name, json=s.log_json, level=s.log_level)
        s.check_secrets(log)
        uvicorn.run(app, host=s.http_host, port=s.http_port, log_config=None, access_log=False)
