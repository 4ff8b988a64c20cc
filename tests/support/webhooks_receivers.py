"""Real local HTTP receivers for webhook tests: each verifies Standard Webhooks signatures with
the `standardwebhooks` library, as an independent subscriber would, and answers as its
`respond(n)` says (n = 1 for the first request it gets): a status, headers, and a delay."""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] | None = None
    delay: float = 0.0


@dataclass
class Hit:
    n: int
    at: float  # time.monotonic()
    headers: dict[str, str]
    body: bytes
    verified_with: list[str]  # which of the receiver's secrets verified it

    @property
    def payload(self) -> dict:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


def always(status: int = 200, **kw) -> Callable[[int], Reply]:
    return lambda n: Reply(status, **kw)


def fail_then_succeed(failures: int, status: int = 500) -> Callable[[int], Reply]:
    return lambda n: Reply(status if n <= failures else 200)


class Receiver:
    def __init__(self, respond: Callable[[int], Reply] = always(200)) -> None:  # noqa: B008 - stateless, safe to share
        self.respond = respond
        self.secrets: list[str] = []
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = []
                for secret in receiver.secrets:
                    try:
                        Webhook(secret).verify(body, headers)
                        verified.append(secret)
                    except WebhookVerificationError:
                        pass
                with receiver._lock:
                    n = len(receiver.hits) + 1
                    receiver.hits.append(Hit(n, time.monotonic(), headers, body, verified))
                reply = receiver.respond(n)
                if reply.delay:
                    time.sleep(reply.delay)
                status = reply.status if verified else 401
                try:
                    self.send_response(status)
                    for k, v in (reply.headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the sender gave up waiting
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        with self._lock:
            return [h.webhook_id for h in self.hits]

    def verified_hits(self) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.verified_with]


class PdfServer:
    """Serves one small PDF, standing in for the signed invoice-PDF URL invoicing issues."""

    PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"

    def __init__(self) -> None:
        pdf = self.PDF

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/pdf")
                self.send_header("content-length", str(len(pdf)))
                self.end_headers()
                self.wfile.write(pdf)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/invoice.pdf?sig=abc"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "PdfServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
