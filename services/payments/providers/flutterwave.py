"""Flutterwave over its v3 API (api.flutterwave.com/v3, JSON, `Authorization: Bearer FLWSECK…`).

- one-off payments: POST /payments (Flutterwave Standard); the customer is redirected to data.link
- saved methods: POST /tokenized-charges with the card token of an earlier charge
- look-ups: GET /transactions/verify_by_reference?tx_ref=…. Our payment id is the tx_ref, so it
  is also the provider reference; a tx_ref nobody has paid yet is requires_action
- callbacks: `flutterwave-signature`, the base64 HMAC-SHA256 of the raw body keyed with the
  account's secret hash (credentials.webhookSecret); the older `verif-hash` header (the hash
  itself) is accepted too. Either way the body's status is only a hint: payments asks
  Flutterwave (`confirm`), as its docs say to verify a transaction before giving value
- idempotency: Flutterwave takes a tx_ref once, so a retried charge it refuses as a duplicate is
  looked up instead; a refund carries our key in `comments`, and a retry first looks for a
  refund made under it (GET /refunds over the last week) before asking for another
Amounts go in major units (12.50), converted exactly from our minor units, never through a float.
"""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from shared.money import exponent, to_decimal

from . import http
from .base import (
    CallbackEvent,
    ChargeRequest,
    ChargeResult,
    Instrument,
    KeyAlreadyUsed,
    ProviderError,
    ProviderUnavailable,
    RefundResult,
    SavedMethod,
    SignatureInvalid,
)

STATUS = {"successful": "succeeded", "failed": "failed", "cancelled": "failed", "pending": "processing"}
NOT_FOUND = "no transaction was found"  # how verify_by_reference answers a tx_ref nobody has paid


class FlutterwaveProvider:
    name = "flutterwave"

    def __init__(
        self,
        secret_key: str,
        secret_hash: str | None,
        *,
        api_base: str = "https://api.flutterwave.com/v3",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.secret_key, self.secret_hash = secret_key, secret_hash
        self.api_base, self.timeout, self.transport = api_base.rstrip("/"), timeout, transport

    async def _call(self, method: str, path: str, body: dict | None = None, *, params: dict | None = None):
        status_code, payload = await http.call(
            "Flutterwave",
            method,
            self.api_base + path,
            timeout=self.timeout,
            transport=self.transport,
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {self.secret_key}"},
        )
        if status_code >= 400 or payload.get("status") != "success":
            message = payload.get("message") or f"Flutterwave answered {status_code}"
            code = "duplicate_reference" if "duplicate" in message.lower() else "provider_error"
            raise ProviderError("not_found" if NOT_FOUND in message.lower() else code, message)
        return payload.get("data"), payload.get("meta") or {}

    @staticmethod
    def _result(tx: dict) -> ChargeResult:
        status = STATUS.get(tx.get("status", ""), "processing")
        failed = status == "failed"
        return ChargeResult(
            provider_reference=tx["tx_ref"],
            status=status,
            failure_code=tx.get("status") if failed else None,
            failure_reason=tx.get("processor_response") if failed else None,
            # What was paid: anyone who knows a tx_ref can pay it, so payments checks it.
            charged=(int(Decimal(str(tx["amount"])).scaleb(exponent(tx["currency"]))), tx["currency"]),
        )

    async def start_payment(self, req: ChargeRequest) -> ChargeResult:
        if req.instrument is not None:
            raise ProviderError(
                "instrument_not_supported", "Flutterwave takes card and mobile-money details on its own page."
            )
        data, _ = await self._call(
            "POST",
            "/payments",
            {
                "tx_ref": req.reference,
                "amount": str(to_decimal(req.amount, req.currency)),
                "currency": req.currency,
                "redirect_url": req.return_url,
                "customer": {"email": req.customer_email or "customer@example.com"},
                "meta": {"payment_id": req.reference},
            },
        )
        return ChargeResult(req.reference, "requires_action", redirect_url=data["link"])

    async def charge_saved_method(self, req: ChargeRequest) -> ChargeResult:
        try:
            data, _ = await self._call(
                "POST",
                "/tokenized-charges",
                {
                    "token": req.method_token,
                    "email": req.customer_email or "customer@example.com",
                    "currency": req.currency,
                    "amount": str(to_decimal(req.amount, req.currency)),
                    "tx_ref": req.reference,
                },
            )
        except ProviderError as exc:
            if exc.code != "duplicate_reference":
                raise
            try:  # the first try reached Flutterwave: find that charge, never make a second
                return await self.get_status(req.reference)
            except ProviderUnavailable:
                raise
            except ProviderError as lookup:
                raise KeyAlreadyUsed(lookup.code, f"Flutterwave has {req.reference} but did not show it") from lookup
        return self._result(data)

    async def save_method(self, customer_id: str, instrument: Instrument) -> SavedMethod:
        raise ProviderError("instrument_not_supported", "Flutterwave card tokens come from a first payment.")

    def verify_callback(
        self, headers: dict[str, str], body: bytes, query: dict[str, str] | None = None
    ) -> CallbackEvent:
        if not self.secret_hash:  # anyone can sign with an empty key
            raise SignatureInvalid("no secret hash is configured")
        signature, legacy = headers.get("flutterwave-signature"), headers.get("verif-hash")
        if signature is not None:
            expected = base64.b64encode(hmac.new(self.secret_hash.encode(), body, hashlib.sha256).digest()).decode()
            if not hmac.compare_digest(expected.encode(), signature.encode()):
                raise SignatureInvalid("flutterwave-signature does not match")
        elif legacy is None or not hmac.compare_digest(self.secret_hash.encode(), legacy.encode()):
            raise SignatureInvalid("neither flutterwave-signature nor verif-hash matches")
        try:
            event = json.loads(body)
            data = event["data"]
            reference = data.get("tx_ref")
            return CallbackEvent(
                event_id=f"{event['event']}:{data.get('id')}:{data.get('status')}",
                payment_id=reference,
                provider_reference=reference,
                status=STATUS.get(data.get("status", "")) if event["event"] == "charge.completed" else None,
                confirm=True,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SignatureInvalid(f"callback body malformed: {exc!r}") from exc

    async def refund(self, idempotency_key: str, provider_reference: str, amount: int, currency: str) -> RefundResult:
        tx, _ = await self._call("GET", "/transactions/verify_by_reference", params={"tx_ref": provider_reference})
        if (made := await self._refund_made(idempotency_key, tx["id"])) is not None:
            return made
        data, _ = await self._call(
            "POST",
            f"/transactions/{tx['id']}/refund",
            {"amount": str(to_decimal(amount, currency)), "comments": idempotency_key},
        )
        return self._refund(data)

    async def _refund_made(self, idempotency_key: str, tx_id: int) -> RefundResult | None:
        today = datetime.now(UTC).date()
        # A retry comes within minutes (the worker backs off to 5 min); a week covers a long outage.
        window = {"from": str(today - timedelta(days=7)), "to": str(today + timedelta(days=1))}
        page = 1
        while True:
            refunds, meta = await self._call("GET", "/refunds", params={**window, "page": page})
            for r in refunds or []:
                if r.get("comments") == idempotency_key and r.get("tx_id") == tx_id:
                    return self._refund(r)
            if page >= int((meta.get("page_info") or {}).get("total_pages") or 1):
                return None
            page += 1

    @staticmethod
    def _refund(data: dict) -> RefundResult:
        return RefundResult(str(data["id"]), "succeeded" if data.get("status") == "completed" else "processing")

    async def get_status(self, provider_reference: str) -> ChargeResult:
        try:
            tx, _ = await self._call("GET", "/transactions/verify_by_reference", params={"tx_ref": provider_reference})
        except ProviderError as exc:
            if exc.code == "not_found":  # a Standard link nobody has paid yet
                return ChargeResult(provider_reference, "requires_action")
            raise
        return self._result(tx)

    async def check_credentials(self) -> None:
        await self._call("GET", "/balances")
