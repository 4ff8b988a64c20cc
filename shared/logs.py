"""structlog setup: JSON outside a terminal, and a correlation id carried in context vars.

The correlation id is bound once per HTTP request or consumed event; every log line and every
event appended while it is bound carries it.
"""

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Any

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
_causation_id: ContextVar[str | None] = ContextVar("causation_id", default=None)


# Secrets that could reach a log line: API keys, webhook secrets, bearer tokens, link signatures
# (sig=, signature=) and the checkout token in /pay/<token>. Replaced before anything is written.
_SECRET = re.compile(
    r"(?P<key>\b(?:sk|pk|rk)_(?:test|live|sandbox)_)[A-Za-z0-9_]+"
    r"|(?P<whsec>\bwhsec_)[A-Za-z0-9+/=_]+"
    r"|(?P<bearer>\bBearer )[^\s\"',]+"
    r"|(?P<param>\b(?:sig|signature|token)=)[^&\s\"']+"
    r"|(?P<pay>/pay/)(?!invoice/)[A-Za-z0-9_-]{16,}"
)


def _redact_text(text: str) -> str:
    if not any(marker in text for marker in ("_test_", "_live_", "_sandbox_", "whsec_", "Bearer", "=", "/pay/")):
        return text  # the common line pays for a few substring checks, not a regex
    return _SECRET.sub(lambda m: next(g for g in m.groups() if g) + "[redacted]", text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    return value


def redact_secrets(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: no key, token or signature is ever written to a log."""
    return {k: _redact(v) for k, v in event_dict.items()}


def configure_logging(service: str, *, json: bool | None = None, level: str = "INFO") -> None:
    if json is None:
        json = not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks if json else structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries (uvicorn, aiokafka, faststream) log through stdlib logging: keep them quiet.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")


def new_id() -> str:
    return str(uuid.uuid4())


def bind_correlation(correlation_id: str | None, causation_id: str | None = None) -> str:
    """Bind the ids for the current task; returns the correlation id (a new one if none given)."""
    cid = correlation_id or new_id()
    _correlation_id.set(cid)
    _causation_id.set(causation_id)
    structlog.contextvars.bind_contextvars(correlation_id=cid)
    return cid


CORRELATION_HEADER = "X-Correlation-Id"
QUIET_PATHS = ("/health", "/ready")


class CorrelationMiddleware:
    """Binds the request's correlation id (X-Correlation-Id or X-Request-Id, else a new one) for
    everything the request does, returns it in the answer and logs one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        status = 500  # what the client sees if the app raises before answering
        with structlog.contextvars.bound_contextvars():
            cid = bind_correlation(headers.get(CORRELATION_HEADER) or headers.get("X-Request-Id"))
            started = time.perf_counter()

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    MutableHeaders(scope=message)[CORRELATION_HEADER] = cid
                await send(message)

            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if scope["path"] not in QUIET_PATHS:
                    get_logger(__name__).info(
                        "http request",
                        method=scope["method"],
                        path=scope["path"],
                        status=status,
                        duration_ms=round((time.perf_counter() - started) * 1000, 1),
                    )


def current_correlation_id() -> str | None:
    return _correlation_id.get()


def current_causation_id() -> str | None:
    return _causation_id.get()


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    # What configure_logging's make_filtering_bound_logger wraps (and structlog's default).
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger
