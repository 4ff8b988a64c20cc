"""Wires one service process: FastAPI for HTTP, FastStream subscribers for Kafka, the outbox
relay and the projection runners, all sharing one asyncpg pool. Every service is built the same
way; its `__main__` only says which routes, consumers and projections it has.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from pathlib import Path

import asyncpg
import structlog
import uvicorn
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared import auth
from shared.db import create_pool, migrate
from shared.errors import install_error_handlers
from shared.eventstore import EventStore
from shared.idempotency import idempotent
from shared.inbox import Delivery, Handler, InboxConsumer
from shared.logs import bind_correlation, configure_logging, get_logger
from shared.outbox import OutboxRelay
from shared.projections import Projection, ProjectionRunner
from shared.registry import EventRegistry
from shared.settings import ServiceSettings

log = get_logger(__name__)
CORRELATION_HEADER = "X-Correlation-Id"


class Service:
    def __init__(
        self,
        settings: ServiceSettings,
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
        self.consumed_topics: list[str] = []
        self.broker = KafkaBroker(settings.kafka_bootstrap, logger=None)
        self.consumers: dict[str, InboxConsumer] = {}
        self._pool: asyncpg.Pool | None = None
        self._tasks: list[asyncio.Task] = []
        self.relay: OutboxRelay | None = None
        self._background: list[tuple[str, Callable[[], Any]]] = []
        self.consume(auth.TENANTS_TOPIC, "tenants")(auth.project_tenant_event)

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

            @self.broker.subscriber(
                topic,
                group_id=consumer.name,
                auto_offset_reset="earliest",
                ack_policy=AckPolicy.NACK_ON_ERROR,
                max_poll_records=200,
            )
            async def _on_message(message: KafkaMessage) -> None:
                raw = message.raw_message
                with structlog.contextvars.bound_contextvars():
                    await consumer.process(
                        self.pool, message.body, Delivery(topic, raw.partition, raw.offset)
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
        runner = ProjectionRunner(s.database_url, self.pool, self.store, self.projections, poll_interval=s.poll_interval_s)
        self._tasks = [asyncio.create_task(self._supervise("outbox relay", self.relay.run))]
        if self.projections:
            self._tasks.append(asyncio.create_task(self._supervise("projections", runner.run)))
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
            except Exception as exc:
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

    # -- HTTP ---------------------------------------------------------------------------------

    async def tenant(self, request: Request) -> str:
        """FastAPI dependency: the authenticated tenant id (401 otherwise)."""
        return await auth.authenticate(request, self.pool)

    def app(self, *routers) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = FastAPI(title=f"Billstream {self.name}", lifespan=lifespan)
        install_error_handlers(app)

        @app.middleware("http")
        async def idempotency(request: Request, call_next):
            return await idempotent(request, call_next, self.pool)

        # Added last, so it runs first: the correlation id is bound for everything below it.
        @app.middleware("http")
        async def correlation(request: Request, call_next):
            with structlog.contextvars.bound_contextvars():
                incoming = request.headers.get(CORRELATION_HEADER) or request.headers.get("X-Request-Id")
                cid = bind_correlation(incoming)
                started = time.perf_counter()
                response = await call_next(request)
                response.headers[CORRELATION_HEADER] = cid
                if request.url.path not in ("/health", "/ready"):
                    log.info("http request", method=request.method, path=request.url.path,
                             status=response.status_code,
                             duration_ms=round((time.perf_counter() - started) * 1000, 1))
                return response

        @app.get("/health", include_in_schema=False)
        async def health() -> dict:
            return {"status": "ok", "service": self.name}

        @app.get("/ready", include_in_schema=False)
        async def ready() -> JSONResponse:
            checks = await self.ready()
            ok = all(checks.values())
            return JSONResponse({"ready": ok, "checks": checks}, 200 if ok else 503)

        for router in routers:
            app.include_router(router)
        return app

    def serve(self, app: FastAPI) -> None:
        s = self.settings
        configure_logging(self.name, json=s.log_json, level=s.log_level)
        uvicorn.run(app, host=s.http_host, port=s.http_port, log_config=None, access_log=False)

