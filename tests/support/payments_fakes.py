"""Local HTTP servers that speak enough of Stripe's and Paystack's APIs for the adapters' tests:
real HTTP on 127.0.0.1, idempotency the way each provider does it, and counters to prove that a
retried call did not charge twice."""

import asyncio
import itertools
import json
import re
import secrets
import time
from urllib.parse import parse_qsl

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.payments_server import free_port, start_payments_server, stop_payments_server


def stripe_form(body: bytes) -> dict:
    """Stripe's form encoding (metadata[payment_id]=x) into a nested dict."""
    out: dict = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def stripe_error(status: int, kind: str, message: str, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "code": code, "message": message}}, status)


class FakeStripe:
    """/v1/payment_intents (create, retrieve, search by metadata), /v1/refunds,
    /v1/checkout/sessions (create, retrieve with expand[]=payment_intent; a session expires at its
    `expires_at`). Test methods: pm_card_visa succeeds, pm_card_chargeDeclined is declined (402
    card_error), pm_card_slow answers late once; `session_delay` makes the next session answer late.
    Idempotency-Key as Stripe keeps it: the same request again replays the first answer, a request
    while the first is still running gets 409, and other parameters 400 `idempotency_error`."""

    def __init__(self, secret_key: str = "sk_test_fake") -> None:
        self.secret_key = secret_key
        self.intents: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.session_delay = 0.0
        self.replies: dict[str, tuple[int, dict]] = {}  # Idempotency-Key -> first answer
        self.first_requests: dict[str, tuple[str, dict]] = {}  # Idempotency-Key -> (path, parameters)
        self.running: set[str] = set()  # keys of requests still being answered
        self.requests: list[tuple[str, str, str | None]] = []
        self._ids = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/v1/payment_intents", self.create_intent, methods=["POST"]),
                Route("/v1/payment_intents/search", self.search_intents, methods=["GET"]),
                Route("/v1/payment_intents/{pid}", self.get_intent, methods=["GET"]),
                Route("/v1/refunds", self.create_refund, methods=["POST"]),
                Route("/v1/checkout/sessions", self.create_session, methods=["POST"]),
                Route("/v1/checkout/sessions/{sid}", self.get_session, methods=["GET"]),
            ]
        )

    def _auth(self, request: Request) -> JSONResponse | None:
        """Every request is kept in `requests` (method, path, Idempotency-Key), then authorised."""
        self.requests.append((request.method, request.url.path, request.headers.get("idempotency-key")))
        if request.headers.get("authorization") != f"Bearer {self.secret_key}":
            return JSONResponse({"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}, 401)
        return None

    async def _idempotent(self, request: Request, make) -> JSONResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        key, form = request.headers.get("idempotency-key"), stripe_form(await request.body())
        if key in self.running:
            return stripe_error(
                409,
                "idempotency_error",
                "There is currently another in-progress request using "
                "this Stripe-Idempotency-Key. Please try again later.",
                "idempotency_key_in_use",
            )
        if key in self.replies:
            if self.first_requests[key] != (request.url.path, form):
                return stripe_error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                )
            status, body = self.replies[key]
            return JSONResponse(body, status, headers={"Idempotent-Replayed": "true"})
        if key:
            self.running.add(key)
        try:
            status, body, delay = await make(form)
            if key:  # kept at once: the work is done even if the answer below never reaches the client
                self.replies[key], self.first_requests[key] = (status, body), (request.url.path, form)
            await asyncio.sleep(delay)
        finally:
            self.running.discard(key)
        return JSONResponse(body, status)

    async def create_intent(self, request: Request) -> JSONResponse:
        async def make(form):
            pid = f"pi_{next(self._ids):06d}"
            method = form.get("payment_method")
            intent = {
                "id": pid,
                "object": "payment_intent",
                "amount": int(form["amount"]),
                "currency": form["currency"],
                "metadata": form.get("metadata", {}),
                "payment_method": method,
                "status": "succeeded",
                "last_payment_error": None,
                "amount_refunded": 0,
            }
            delay = 0.0
            if method == "pm_card_chargeDeclined":
                intent["status"] = "requires_payment_method"
                intent["last_payment_error"] = {
                    "code": "card_declined",
                    "decline_code": "generic_decline",
                    "message": "Your card was declined.",
                }
                self.intents[pid] = intent
                return (
                    402,
                    {
                        "error": {
                            "type": "card_error",
                            "code": "card_declined",
                            "decline_code": "generic_decline",
                            "message": "Your card was declined.",
                            "payment_intent": intent,
                        }
                    },
                    0,
                )
            if method == "pm_card_slow" and not any(
                i["payment_method"] == "pm_card_slow" for i in self.intents.values()
            ):
                delay = 6.0  # the intent exists, but the answer comes after the client (3 s) gave up
            self.intents[pid] = intent
            return 200, intent, delay

        return await self._idempotent(request, make)

    async def get_intent(self, request: Request) -> JSONResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        intent = self.intents.get(request.path_params["pid"])
        if intent is None:
            return JSONResponse(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": "No such payment_intent",
                    }
                },
                404,
            )
        return JSONResponse(intent)

    async def create_refund(self, request: Request) -> JSONResponse:
        async def make(form):
            intent = self.intents.get(form.get("payment_intent"))
            if intent is None:
                return (
                    404,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "resource_missing",
                            "message": "No such payment_intent",
                        }
                    },
                    0,
                )
            amount = int(form.get("amount") or intent["amount"] - intent["amount_refunded"])
            if amount > intent["amount"] - intent["amount_refunded"]:
                return (
                    400,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "amount_too_large",
                            "message": "Refund amount is greater than unrefunded amount",
                        }
                    },
                    0,
                )
            intent["amount_refunded"] += amount
            refund = {
                "id": f"re_{next(self._ids):06d}",
                "object": "refund",
                "amount": amount,
                "payment_intent": intent["id"],
                "status": "succeeded",
            }
            self.refunds[refund["id"]] = refund
            return 200, refund, 0

        return await self._idempotent(request, make)

    async def search_intents(self, request: Request) -> JSONResponse:
        """Only the query form `metadata['k']:'v'`, newest first."""
        if (denied := self._auth(request)) is not None:
            return denied
        match = re.fullmatch(r"metadata\['(\w+)'\]:'([^']*)'", request.query_params.get("query", ""))
        if match is None:
            return stripe_error(400, "invalid_request_error", "Unsupported search query.", "parameter_invalid")
        found = [i for i in reversed(self.intents.values()) if i["metadata"].get(match[1]) == match[2]]
        return JSONResponse(
            {
                "object": "search_result",
                "url": "/v1/payment_intents/search",
                "data": found,
                "has_more": False,
                "next_page": None,
            }
        )

    async def create_session(self, request: Request) -> JSONResponse:
        async def make(form):
            expires = int(form.get("expires_at") or time.time() + 86400)
            if not time.time() + 1800 <= expires <= time.time() + 86400:  # Stripe's own window
                return (
                    400,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "param": "expires_at",
                            "message": "The `expires_at` timestamp must be between 30 minutes and 24 hours from now.",
                        }
                    },
                    0,
                )
            sid = f"cs_test_{next(self._ids):06d}"
            line = form["line_items"]["0"]["price_data"]
            session = {
                "id": sid,
                "object": "checkout.session",
                "url": f"https://checkout.stripe.test/c/pay/{sid}",
                "status": "open",
                "payment_status": "unpaid",
                "payment_intent": None,
                "amount_total": int(line["unit_amount"]),
                "currency": line["currency"],
                "customer_email": form.get("customer_email"),
                "expires_at": expires,
                "client_reference_id": form.get("client_reference_id"),
                "metadata": form.get("metadata", {}),
                "intent_metadata": form.get("payment_intent_data", {}).get("metadata", {}),
            }
            self.sessions[sid] = session
            delay, self.session_delay = self.session_delay, 0.0
            return 200, self._session_view(session), delay

        return await self._idempotent(request, make)

    def _session_view(self, session: dict, expand: bool = False) -> dict:
        if session["status"] == "open" and time.time() >= session["expires_at"]:
            session["status"] = "expired"
        view = {k: v for k, v in session.items() if k != "intent_metadata"}
        if expand and session["payment_intent"]:
            view["payment_intent"] = self.intents[session["payment_intent"]]
        return view

    async def get_session(self, request: Request) -> JSONResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        session = self.sessions.get(request.path_params["sid"])
        if session is None:
            return stripe_error(404, "invalid_request_error", "No such checkout.session", "resource_missing")
        expand = "payment_intent" in [v for k, v in request.query_params.multi_items() if k.startswith("expand")]
        return JSONResponse(self._session_view(session, expand))

    def pay_session(self, sid: str) -> dict:
        """The customer pays on Stripe's page (no webhook is sent): a succeeded PaymentIntent."""
        session = self.sessions[sid]
        assert self._session_view(session)["status"] == "open", "only an open session can be paid"
        pid = f"pi_{next(self._ids):06d}"
        self.intents[pid] = {
            "id": pid,
            "object": "payment_intent",
            "amount": session["amount_total"],
            "currency": session["currency"],
            "metadata": session["intent_metadata"],
            "payment_method": "pm_card_visa",
            "status": "succeeded",
            "last_payment_error": None,
            "amount_refunded": 0,
        }
        session.update(status="complete", payment_status="paid", payment_intent=pid)
        return self.intents[pid]


class FakePaystack:
    """/transaction/initialize, /transaction/charge_authorization, /transaction/verify/{ref}, /refund.
    Authorizations: AUTH_ok succeeds, AUTH_nofunds fails, AUTH_slow answers late once."""

    def __init__(self, secret_key: str = "sk_test_paystack") -> None:
        self.secret_key = secret_key
        self.transactions: dict[str, dict] = {}
        self.refunds: list[dict] = []
        self._ids = itertools.count(1000)
        self.app = Starlette(
            routes=[
                Route("/transaction/initialize", self.initialize, methods=["POST"]),
                Route("/transaction/charge_authorization", self.charge_authorization, methods=["POST"]),
                Route("/transaction/verify/{reference}", self.verify, methods=["GET"]),
                Route("/refund", self.refund, methods=["GET", "POST"]),
            ]
        )

    @staticmethod
    def _ok(data, message="OK") -> JSONResponse:
        return JSONResponse({"status": True, "message": message, "data": data})

    @staticmethod
    def _no(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"status": False, "message": message}, status)

    def _denied(self, request: Request) -> JSONResponse | None:
        if request.headers.get("authorization") != f"Bearer {self.secret_key}":
            return self._no("Invalid key", 401)
        return None

    def _new(self, body: dict, status: str, gateway_response: str) -> dict | None:
        if body["reference"] in self.transactions:
            return None
        tx = {
            "id": next(self._ids),
            "reference": body["reference"],
            "amount": int(body["amount"]),
            "currency": body.get("currency", "NGN"),
            "status": status,
            "gateway_response": gateway_response,
            "metadata": body.get("metadata") or {},
            "refunded": 0,
        }
        self.transactions[tx["reference"]] = tx
        return tx

    async def initialize(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        body = await request.json()
        tx = self._new(body, "abandoned", "")
        if tx is None:
            return self._no("Duplicate Transaction Reference")
        code = secrets.token_hex(6)
        return self._ok(
            {
                "authorization_url": f"https://checkout.paystack.test/{code}",
                "access_code": code,
                "reference": tx["reference"],
            },
            "Authorization URL created",
        )

    async def charge_authorization(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        body = await request.json()
        auth = body["authorization_code"]
        status, gateway = ("failed", "Insufficient Funds") if auth == "AUTH_nofunds" else ("success", "Approved")
        tx = self._new(body, status, gateway)
        if tx is None:
            return self._no("Duplicate Transaction Reference")
        if auth == "AUTH_slow" and sum(t["metadata"].get("slow", 0) for t in self.transactions.values()) == 0:
            tx["metadata"]["slow"] = 1
            await asyncio.sleep(6.0)  # past the client's 3 s
        return self._ok(tx, "Charge attempted")

    async def verify(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        tx = self.transactions.get(request.path_params["reference"])
        return self._ok(tx, "Verification successful") if tx else self._no("Transaction reference not found", 404)

    async def refund(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        if request.method == "GET":
            ref = request.query_params.get("transaction")
            return self._ok([r for r in self.refunds if r["transaction_reference"] == ref])
        body = await request.json()
        tx = self.transactions.get(body["transaction"])
        if tx is None or tx["status"] != "success":
            return self._no("Transaction not found or not refundable")
        amount = int(body.get("amount") or tx["amount"] - tx["refunded"])
        if amount > tx["amount"] - tx["refunded"]:
            return self._no("Refund amount cannot be more than the unrefunded transaction amount")
        tx["refunded"] += amount
        refund = {
            "id": next(self._ids),
            "transaction_reference": tx["reference"],
            "amount": amount,
            "status": "processed",
            "merchant_note": body.get("merchant_note"),
        }
        self.refunds.append(refund)
        return self._ok(refund, "Refund has been queued for processing")


class LocalServer:
    """Serve an ASGI app on 127.0.0.1 inside the test's event loop."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "LocalServer":
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.should_exit = True
        await self._task


def paystack_signature(secret_key: str, body: bytes) -> str:
    import hashlib
    import hmac

    return hmac.new(secret_key.encode(), body, hashlib.sha512).hexdigest()


def stripe_event(event_type: str, obj: dict) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{secrets.token_hex(8)}",
            "object": "event",
            "type": event_type,
            "api_version": "2024-06-20",
            "data": {"object": obj},
        }
    ).encode()


# A test module imports this to get a local Stripe and a payments process pointed at it.
@pytest.fixture
async def stripe_and_payments(database, kafka):
    fake = FakeStripe()
    async with LocalServer(fake.app) as stripe_server:
        server = await start_payments_server(database, kafka, STRIPE_API_BASE=stripe_server.url)
        try:
            yield fake, server
        finally:
            await stop_payments_server(server)
