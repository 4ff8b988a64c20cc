"""The sandbox provider adapter: talks to the sandbox's HTTP API (providers/sandbox_server.py,
served by this service under /sandbox/v1) exactly as a real adapter talks to its provider, so
timeouts, retries and signed callbacks are real. The local default.

Test instruments (docs/payments.md):

| instrument | number | what happens |
|---|---|---|
| card | 4242 4242 4242 4242 | succeeds |
| card | 4000 0000 0000 0002 | declined: `card_declined` |
| card | 4000 0000 0000 9995 | declined: `insufficient_funds` |
| card | 4000 0000 0000 0119 | needs a retry: fails `try_again_later`, the next charge on it succeeds |
| mobile money | 256700000001 | succeeds |
| mobile money | 256700000002 | fails: `insufficient_funds` |
| mobile money | 256700000003 | times out: the first API call does not answer in time; succeeds later |
| mobile money | 256700000004 | the customer never approves: fails `approval_timeout` |
"""

import json

import httpx

from . import signing
from .base import (
    CallbackEvent,
    ChargeRequest,
    ChargeResult,
    Instrument,
    ProviderError,
    ProviderUnavailable,
    RefundResult,
    SavedMethod,
    SignatureInvalid,
)

SIGNATURE_HEADER = "sandbox-signature"

CARDS = {
    "4242424242424242": "succeeds",
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000119": "try_again_later",
}
MOBILE_MONEY = {
    "256700000001": "succeeds",
    "256700000002": "insufficient_funds",
    "256700000003": "times_out",
    "256700000004": "approval_timeout",
}


def normalise(instrument: Instrument) -> Instrument:
    digits = "".join(ch for ch in instrument.number if ch.isdigit())
    known = CARDS if instrument.type == "card" else MOBILE_MONEY if instrument.type == "mobile_money" else {}
    if digits not in known:
        raise ProviderError(
            "instrument_invalid",
            f"Not a sandbox test {instrument.type.replace('_', ' ')} number; see the documented test instruments.",
        )
    return Instrument(instrument.type, digits)


def label(instrument: Instrument) -> str:
    if instrument.type == "card":
        return f"Test card •••• {instrument.number[-4:]}"
    return f"Test mobile money •••• {instrument.number[-4:]}"


class SandboxProvider:
    name = "sandbox"

    def __init__(
        self,
        api_url: str,
        secret_key: str,
        webhook_secret: str,
        *,
        timeout: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url, self.secret_key, self.webhook_secret = api_url.rstrip("/"), secret_key, webhook_secret
        self.timeout, self.transport = timeout, transport

    async def _call(
        self, method: str, path: str, *, json_body: dict | None = None, idempotency_key: str | None = None
    ) -> dict:
        headers = {"Authorization": f"Bearer {self.secret_key}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
                r = await client.request(method, self.api_url + path, json=json_body, headers=headers)
        except httpx.HTTPError as exc:  # timeouts included: the charge may exist, retry with the same key
            raise ProviderUnavailable("provider_unavailable", f"sandbox did not answer: {exc!r}") from exc
        if r.status_code >= 500:
            raise ProviderUnavailable("provider_unavailable", f"sandbox answered {r.status_code}")
        body = r.json()
        if r.status_code >= 400:
            err = body.get("error", {})
            raise ProviderError(err.get("code", "provider_error"), err.get("message", r.text))
        return body

    @staticmethod
    def _result(charge: dict) -> ChargeResult:
        return ChargeResult(
            provider_reference=charge["id"],
            status=charge["status"],
            failure_code=charge.get("failureCode"),
            failure_reason=charge.get("failureMessage"),
        )

    async def _charge(self, req: ChargeRequest, instrument: Instrument) -> ChargeResult:
        charge = await self._call(
            "POST",
            "/charges",
            idempotency_key=req.idempotency_key,
            json_body={
                "amount": req.amount,
                "currency": req.currency,
                "reference": req.reference,
                "instrument": {"type": instrument.type, "number": instrument.number},
                "callbackUrl": req.callback_url,
            },
        )
        return self._result(charge)

    async def start_payment(self, req: ChargeRequest) -> ChargeResult:
        if req.instrument is None:
            raise ProviderError("instrument_required", "The sandbox needs a test instrument.")
        return await self._charge(req, normalise(req.instrument))

    async def charge_saved_method(self, req: ChargeRequest) -> ChargeResult:
        # Sandbox tokens are "type:number" (test numbers are not secrets).
        kind, _, number = (req.method_token or "").partition(":")
        return await self._charge(req, normalise(Instrument(kind, number)))

    async def save_method(self, customer_id: str, instrument: Instrument) -> SavedMethod:
        instrument = normalise(instrument)
        return SavedMethod(
            token=f"{instrument.type}:{instrument.number}", type=instrument.type, label=label(instrument)
        )

    def verify_callback(
        self, headers: dict[str, str], body: bytes, query: dict[str, str] | None = None
    ) -> CallbackEvent:
        signing.verify(self.webhook_secret, headers.get(SIGNATURE_HEADER), body)
        try:
            event = json.loads(body)
            charge = event["data"]["charge"]
            return CallbackEvent(
                event_id=event["id"],
                payment_id=charge.get("reference"),
                provider_reference=charge["id"],
                status={
                    "charge.processing": "processing",
                    "charge.succeeded": "succeeded",
                    "charge.failed": "failed",
                }.get(event["type"]),
                failure_code=charge.get("failureCode"),
                failure_reason=charge.get("failureMessage"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SignatureInvalid(f"callback body malformed: {exc!r}") from exc

    async def refund(self, idempotency_key: str, provider_reference: str, amount: int, currency: str) -> RefundResult:
        refund = await self._call(
            "POST",
            "/refunds",
            idempotency_key=idempotency_key,
            json_body={"charge": provider_reference, "amount": amount},
        )
        return RefundResult(provider_reference=refund["id"], status=refund["status"])

    async def get_status(self, provider_reference: str) -> ChargeResult:
        return self._result(await self._call("GET", f"/charges/{provider_reference}"))

    async def check_credentials(self) -> None:
        await self._call("GET", "/balance")
