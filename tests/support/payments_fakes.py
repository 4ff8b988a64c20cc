"""Local HTTP servers that speak enough of Stripe's, Paystack's, Flutterwave's and Daraja's (M-Pesa)
APIs for the adapters' tests:
real HTTP on 127.0.0.1, idempotency the way each provider does it, and counters to prove that a
retried call did not charge twice."""

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from urllib.parse import parse_qsl

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.payments.providers.base import ChargeRequest
from tests.support.payments_server import free_port, start_payments_server, stop_payments_server


def charge_request(
    reference: str, token: str | None = None, amount: int = 5000, currency: str = "USD", **more
) -> ChargeRequest:
    """What the charge worker hands an adapter, keyed `billstream_<reference>` as it keys them."""
    return ChargeRequest(
        idempotency_key=f"billstream_{reference}",
        reference=reference,
        amount=amount,
        currency=currency,
        callback_url="http://127.0.0.1/webhooks/x",
        method_token=token,
        customer_email="grace@example.com",
        **more,
    )


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
                Route("/v1/balance", self.balance, methods=["GET"]),
            ]
        )

    def _auth(self, request: Request) -> JSONResponse | None:
        """Every request is kept in `requests` (method, path, Idempotency-Key), then authorised."""
        self.requests.append((request.method, request.url.path, request.headers.get("idempotency-key")))
        if request.headers.get("authorization") != f"Bearer {self.secret_key}":
            return JSONResponse({"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}, 401)
        return None

    async def balance(self, request: Request) -> JSONResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        return JSONResponse({"object": "balance", "available": [], "pending": [], "livemode": False})

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
                Route("/balance", self.balance, methods=["GET"]),
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

    async def balance(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        return self._ok([{"currency": "NGN", "balance": 0}], "Balances retrieved")

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


class FakeFlutterwave:
    """Flutterwave v3: /payments (Standard: a link; `pay(tx_ref)` is the customer paying there),
    /tokenized-charges (token flw-t-ok succeeds, flw-t-nofunds fails; a tx_ref is taken once),
    /transactions/verify_by_reference, /transactions/{id}/refund, /refunds (from, to, page: two a
    page, so the adapter pages), /balances. Amounts in major units, as Flutterwave's are."""

    def __init__(self, secret_key: str = "FLWSECK_TEST-fake") -> None:
        self.secret_key = secret_key
        self.transactions: dict[str, dict] = {}  # tx_ref -> transaction
        self.links: dict[str, dict] = {}  # tx_ref -> the Standard request
        self.refunds: list[dict] = []
        self._ids = itertools.count(5000)
        self.app = Starlette(
            routes=[
                Route("/v3/payments", self.standard, methods=["POST"]),
                Route("/v3/tokenized-charges", self.tokenized, methods=["POST"]),
                Route("/v3/transactions/verify_by_reference", self.verify, methods=["GET"]),
                Route("/v3/transactions/{id:int}/refund", self.refund, methods=["POST"]),
                Route("/v3/refunds", self.list_refunds, methods=["GET"]),
                Route("/v3/balances", self.balances, methods=["GET"]),
            ]
        )

    @staticmethod
    def _ok(data, message="success", **more) -> JSONResponse:
        return JSONResponse({"status": "success", "message": message, "data": data, **more})

    @staticmethod
    def _no(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"status": "error", "message": message, "data": None}, status)

    def _denied(self, request: Request) -> JSONResponse | None:
        if request.headers.get("authorization") != f"Bearer {self.secret_key}":
            return self._no("Invalid authorization key", 401)
        return None

    def _new(self, tx_ref: str, amount, currency: str, status: str, response: str) -> dict:
        tx = {
            "id": next(self._ids),
            "tx_ref": tx_ref,
            "flw_ref": f"FLW-MOCK-{secrets.token_hex(4)}",
            "amount": float(amount),
            "currency": currency,
            "status": status,
            "processor_response": response,
            "refunded": 0.0,
        }
        self.transactions[tx_ref] = tx
        return tx

    async def standard(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        body = await request.json()
        self.links[body["tx_ref"]] = body
        return self._ok({"link": f"https://checkout.flutterwave.test/pay/{body['tx_ref']}"}, "Hosted Link")

    def pay(self, tx_ref: str) -> dict:
        link = self.links[tx_ref]
        return self._new(tx_ref, link["amount"], link["currency"], "successful", "Approved")

    async def tokenized(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        body = await request.json()
        if body["tx_ref"] in self.transactions:
            return self._no("Duplicate transaction reference")
        ok = body["token"] == "flw-t-ok"
        tx = self._new(
            body["tx_ref"],
            body["amount"],
            body["currency"],
            "successful" if ok else "failed",
            "Approved" if ok else "Insufficient funds",
        )
        return self._ok(tx, "Charge successful")

    async def verify(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        tx = self.transactions.get(request.query_params.get("tx_ref", ""))
        return (
            self._ok(tx, "Transaction fetched successfully")
            if tx
            else self._no("No transaction was found for this id", 404)
        )

    async def refund(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        body = await request.json()
        tx = next((t for t in self.transactions.values() if t["id"] == request.path_params["id"]), None)
        if tx is None or tx["status"] != "successful":
            return self._no("Transaction not found or not refundable")
        amount = float(body.get("amount") or tx["amount"] - tx["refunded"])
        if amount > tx["amount"] - tx["refunded"] + 1e-9:
            return self._no("Refund amount cannot be more than the transaction amount")
        tx["refunded"] += amount
        refund = {
            "id": next(self._ids),
            "tx_id": tx["id"],
            "amount_refunded": amount,
            "status": "completed",
            "comments": body.get("comments"),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        }
        self.refunds.append(refund)
        return self._ok(refund, "Transaction refund initiated")

    async def list_refunds(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        day_from, day_to = request.query_params["from"], request.query_params["to"]
        found = [r for r in self.refunds if day_from <= r["created_at"][:10] <= day_to]
        page = int(request.query_params.get("page", 1))
        pages = max(1, -(-len(found) // 2))
        return self._ok(
            found[(page - 1) * 2 : page * 2],
            "Refunds fetched",
            meta={"page_info": {"total": len(found), "current_page": page, "total_pages": pages}},
        )

    async def balances(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        return self._ok([{"currency": "UGX", "available_balance": 0, "ledger_balance": 0}], "Wallet balances fetched")


class FakeDaraja:
    """Safaricom Daraja: /oauth/v1/generate (Basic consumer key and secret), the STK push and its
    query. A push waits for the customer: `answer(checkout_id, result_code)` decides it and posts
    Daraja's callback to the push's CallBackURL, as Safaricom does (result 0 paid, 1032 cancelled).
    Phone 254700000009 makes the push answer late once (past the client's timeout)."""

    def __init__(self, consumer_key: str = "ck_fake", consumer_secret: str = "cs_fake") -> None:
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.shortcode, self.passkey = "174379", "passkey_fake"
        self.tokens: set[str] = set()
        self.pushes: dict[str, dict] = {}  # CheckoutRequestID -> the push and its result
        self.slow_once = True
        self.busy = False  # answer pushes 429 (Daraja's spike arrest): nothing is sent
        self.app = Starlette(
            routes=[
                Route("/oauth/v1/generate", self.oauth, methods=["GET"]),
                Route("/mpesa/stkpush/v1/processrequest", self.push, methods=["POST"]),
                Route("/mpesa/stkpushquery/v1/query", self.query, methods=["POST"]),
            ]
        )

    @property
    def credentials(self) -> dict:
        return {
            "consumerKey": self.consumer_key,
            "consumerSecret": self.consumer_secret,
            "shortcode": self.shortcode,
            "passkey": self.passkey,
        }

    async def oauth(self, request: Request) -> JSONResponse:
        expected = base64.b64encode(f"{self.consumer_key}:{self.consumer_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"errorCode": "400.008.01", "errorMessage": "Invalid Authentication passed"}, 400)
        token = secrets.token_hex(8)
        self.tokens.add(token)
        return JSONResponse({"access_token": token, "expires_in": "3599"})

    def _denied(self, request: Request) -> JSONResponse | None:
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return JSONResponse({"errorCode": "404.001.03", "errorMessage": "Invalid Access Token"}, 401)
        return None

    def _password_ok(self, body: dict) -> bool:
        expected = base64.b64encode(f"{self.shortcode}{self.passkey}{body['Timestamp']}".encode()).decode()
        return body["BusinessShortCode"] == self.shortcode and body["Password"] == expected

    async def push(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        if self.busy:
            return JSONResponse({"errorCode": "500.003.02", "errorMessage": "Spike arrest violation"}, 429)
        body = await request.json()
        if not self._password_ok(body):
            return JSONResponse({"errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid Password"}, 400)
        if not isinstance(body["Amount"], int) or body["Amount"] < 1:
            return JSONResponse({"errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid Amount"}, 400)
        checkout_id = f"ws_CO_{secrets.token_hex(6)}"
        self.pushes[checkout_id] = {**body, "result": None}
        if body["PhoneNumber"] == "254700000009" and self.slow_once:
            self.slow_once = False
            await asyncio.sleep(6.0)  # past the client's 3 s: the prompt went out, the answer is lost
        return JSONResponse(
            {
                "MerchantRequestID": secrets.token_hex(4),
                "CheckoutRequestID": checkout_id,
                "ResponseCode": "0",
                "ResponseDescription": "Success. Request accepted for processing",
                "CustomerMessage": "Success. Request accepted for processing",
            }
        )

    async def query(self, request: Request) -> JSONResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        body = await request.json()
        push = self.pushes.get(body["CheckoutRequestID"])
        if push is None:
            return JSONResponse({"errorCode": "400.002.02", "errorMessage": "Invalid CheckoutRequestID"}, 400)
        if push["result"] is None:
            return JSONResponse(
                {"errorCode": "500.001.1001", "errorMessage": "The transaction is being processed"}, 500
            )
        return JSONResponse(
            {
                "ResponseCode": "0",
                "CheckoutRequestID": body["CheckoutRequestID"],
                "ResultCode": str(push["result"]),
                "ResultDesc": "The service request is processed successfully."
                if push["result"] == 0
                else "Request cancelled by user",
            }
        )

    @staticmethod
    def callback_body(checkout_id: str, result_code: int, amount: int = 0) -> bytes:
        callback = {"MerchantRequestID": "m1", "CheckoutRequestID": checkout_id, "ResultCode": result_code}
        if result_code == 0:
            callback["ResultDesc"] = "The service request is processed successfully."
            callback["CallbackMetadata"] = {
                "Item": [{"Name": "Amount", "Value": amount}, {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"}]
            }
        else:
            callback["ResultDesc"] = "Request cancelled by user"
        return json.dumps({"Body": {"stkCallback": callback}}).encode()

    async def answer(self, checkout_id: str, result_code: int) -> httpx.Response:
        push = self.pushes[checkout_id]
        push["result"] = result_code
        async with httpx.AsyncClient() as client:
            return await client.post(
                push["CallBackURL"], content=self.callback_body(checkout_id, result_code, push["Amount"])
            )


def flutterwave_signature(secret_hash: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret_hash.encode(), body, hashlib.sha256).digest()).decode()


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
