"""One JSON error shape for every service, and the HTTP status of each kind of refusal:

{"error": {"type": "...", "code": "stable_code", "message": "what to do", "field": "x" | null}}
"""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import AuthenticationError, Conflict, Declined, Forbidden, Gone, NotFound, Refused
from shared.failures import is_transient
from shared.logs import get_logger

log = get_logger(__name__)

# The most specific class of a refusal decides; anything else refused is a 400.
STATUS: dict[type[Refused], int] = {
    AuthenticationError: 401,
    Declined: 402,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
}


def status_of(exc: Refused) -> int:
    return next((STATUS[c] for c in type(exc).__mro__ if c in STATUS), 400)


def type_of(exc: Refused) -> str:
    return "authentication_error" if isinstance(exc, AuthenticationError) else "invalid_request_error"


def error_body(err_type: str, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"type": err_type, "code": code, "message": message, "field": field}}


def _field_of(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(error_body(type_of(exc), exc.code, exc.message, exc.field), status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = _field_of(tuple(first.get("loc", ())))
        message = f"{field}: {first['msg']}" if field else first["msg"]
        return JSONResponse(error_body("invalid_request_error", "parameter_invalid", message, field), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body("invalid_request_error", code, str(exc.detail)), exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        if is_transient(exc):  # the database restarting, a deadlock: the same request can pass soon
            log.warning("request failed on a transient fault", error=repr(exc))
            return JSONResponse(
                error_body("api_error", "service_unavailable", "Temporarily unavailable; retry shortly."),
                503,
                headers={"Retry-After": "1"},
            )
        log.error("unhandled error", exc_info=exc)
        return JSONResponse(error_body("api_error", "internal_error", "Something went wrong on our side."), 500)
