"""Input PostgreSQL can never store, refused at the door: a NUL character (in the path, the
query or a JSON body) would otherwise fail deep in a write as a 500, or stop a consumer."""

import re
from urllib.parse import unquote_to_bytes

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http_errors import error_body

# "\u0000" in JSON, not preceded by an escaped backslash ("\\u0000" is the six characters).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _refusal(where: str, status: int) -> JSONResponse:
    return JSONResponse(
        error_body(
            "invalid_request_error", "parameter_invalid", f"NUL characters are not accepted in the {where}.", where
        ),
        status,
    )


class NulGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if "\x00" in scope["path"]:
            return await _refusal("path", 404)(scope, receive, send)
        if b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
            return await _refusal("query", 400)(scope, receive, send)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if b"\x00" in body or _JSON_NUL.search(body):
            return await _refusal("body", 400)(scope, receive, send)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # after the body: disconnects and the like
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
