"""Paystack over its documented HTTPS API (api.paystack.co, JSON, `Authorization: Bearer sk_…`).

- one-off payments: POST /transaction/initialize → the customer is redirected to authorization_url
- saved methods: POST /transaction/charge_authorization with the authorization_code
- callbacks: x-paystack-signature = HMAC-SHA512 of the raw body with the secret key
- idempotency: Paystack dedupes by transaction `reference`, which is our payment id, so a retried
  charge after a timeout answers "Duplicate Transaction Reference" and we look the charge up
  instead (if even that fails the refusal is KeyAlreadyUsed, retried: never a decline); refunds
  carry our key in merchant_note and are looked up before being created again.
- a hosted transaction the customer has not paid is `abandoned` (requires_action); initialize
  takes no expiry, so the charge worker ends it as `expired` at the payment's checkout deadline.
Amounts are in the currency's subunit, as ours are.
"""

import hashlib
import hmac
import json

import httpx

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

# "abandoned" means the customer has not finished paying yet, not that the payment failed.
STATUS = {
    "success": "succeeded",
    "failed": "failed",
    "reversed": "failed",
    "abandoned": "requires_action",
    "pending": "processing",
    "ongoing": "processing",
    "processing": "processing",
    "queued": "processing",
    "send_otp": "requires_action",
    "send_pin": "requires_action",
}


class PaystackProvider:
    name = "paystack"

    def __init__(
        self,
        secret_key: str,
        *,
        api_base: str = "https://api.paystack.co",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.secret_key, self.api_base, self.timeout, self.transport = (
            secret_key,
            api_base.rstrip("/"),
            timeout,
            transport,
        )

    async def _call(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        *,
        params: dict | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        headers = {"Authorization": f"Bearer {self.secret_key}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key  # for our logs and proxies; Paystack keys on reference
        status_code, payload = await http.call(
            "Paystack",
            method,
            self.api_base + path,
            timeout=self.timeout,
            transport=self.transport,
            json=body,
            params=params,
            headers=headers,
        )
        if status_code >= 400 or not payload.get("status"):
            message = payload.get("message") or f"Paystack answered {status_code}"
            code = "duplicate_reference" if "duplicate" in message.lower() else "provider_error"
            raise ProviderError(code, message)
        return payload["data"]

    @staticmethod
    def _result(tx: dict) -> ChargeResult:
        status = STATUS.get(tx.get("status", ""), "processing")
        failed = status == "failed"
        return ChargeResult(
            provider_reference=tx["reference"],
            status=status,
            failure_code=(tx.get("status") if failed else None),
            failure_reason=(tx.get("gateway_response") if failed else None),
        )

    async def start_payment(self, req: ChargeRequest) -> ChargeResult:
        if req.instrument is not None:
            raise ProviderError(
                "instrument_not_supported", "Paystack takes card and mobile-money details on its own page."
            )
        try:
            data = await self._call(
                "POST",
                "/transaction/initialize",
                {
                    "email": req.customer_email or "customer@example.com",
                    "amount": req.amount,
                    "currency": req.currency,
                    "reference": req.reference,
                    "callback_url": req.return_url,
                    "metadata": {"payment_id": req.reference},
                },
                idempotency_key=req.idempotency_key,
            )
        except ProviderError as exc:
            if exc.code != "duplicate_reference":
                raise
            return await self._existing(req.reference)  # initialized before: the retry finds it
        return ChargeResult(
            provider_reference=data["reference"], status="requires_action", redirect_url=data["authorization_url"]
        )

    async def charge_saved_method(self, req: ChargeRequest) -> ChargeResult:
        try:
            data = await self._call(
                "POST",
                "/transaction/charge_authorization",
                {
                    "authorization_code": req.method_token,
                    "email": req.customer_email or "customer@example.com",
                    "amount": req.amount,
                    "currency": req.currency,
                    "reference": req.reference,
                    "metadata": {"payment_id": req.reference},
                },
                idempotency_key=req.idempotency_key,
            )
        except ProviderError as exc:
            if exc.code != "duplicate_reference":
                raise
            return await self._existing(req.reference)  # the first try did reach Paystack: no second charge
        return self._result(data)

    async def _existing(self, reference: str) -> ChargeResult:
        """The transaction a duplicate reference names. Paystack has it, so a look-up it refuses
        is no decline either: the job stays pending and is tried again."""
        try:
            return await self.get_status(reference)
        except ProviderUnavailable:
            raise
        except ProviderError as exc:
            raise KeyAlreadyUsed(exc.code, f"Paystack has {reference} but did not show it: {exc.message}") from exc

    async def save_method(self, customer_id: str, instrument: Instrument) -> SavedMethod:
        raise ProviderError(
            "instrument_not_supported", "Paystack methods come from a first payment's authorization_code."
        )

    def verify_callback(
        self, headers: dict[str, str], body: bytes, query: dict[str, str] | None = None
    ) -> CallbackEvent:
        if not self.secret_key:  # anyone can sign with an empty key
            raise SignatureInvalid("no secret key is configured")
        expected = hmac.new(self.secret_key.encode(), body, hashlib.sha512).hexdigest()
        if not hmac.compare_digest(expected, headers.get("x-paystack-signature") or ""):
            raise SignatureInvalid("x-paystack-signature does not match")
        try:
            event = json.loads(body)
            data = event["data"]
            status = {"charge.success": "succeeded", "charge.failed": "failed"}.get(event["event"])
            # Paystack events carry no id of their own: the transaction id and event name identify one.
            return CallbackEvent(
                event_id=f"{event['event']}:{data.get('id')}:{data.get('reference')}",
                payment_id=(data.get("metadata") or {}).get("payment_id") or data.get("reference"),
                provider_reference=data.get("reference"),
                status=status,
                failure_code="failed" if status == "failed" else None,
                failure_reason=data.get("gateway_response") if status == "failed" else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SignatureInvalid(f"callback body malformed: {exc!r}") from exc

    async def refund(self, idempotency_key: str, provider_reference: str, amount: int, currency: str) -> RefundResult:
        existing = await self._call("GET", "/refund", params={"transaction": provider_reference})
        for refund in existing or []:
            if refund.get("merchant_note") == idempotency_key:
                return RefundResult(
                    str(refund["id"]), "succeeded" if refund.get("status") == "processed" else "processing"
                )
        data = await self._call(
            "POST",
            "/refund",
            {
                "transaction": provider_reference,
                "amount": amount,
                "currency": currency,
                "merchant_note": idempotency_key,
            },
            idempotency_key=idempotency_key,
        )
        return RefundResult(str(data["id"]), "succeeded" if data.get("status") == "processed" else "processing")

    async def get_status(self, provider_reference: str) -> ChargeResult:
        return self._result(await self._call("GET", f"/transaction/verify/{provider_reference}"))

    async def check_credentials(self) -> None:
        await self._call("GET", "/balance")
