"""M-Pesa over Safaricom's Daraja API (Lipa na M-Pesa Online, "STK push").

- credentials: consumerKey and consumerSecret (OAuth: GET /oauth/v1/generate, Basic auth, gives a
  bearer token for an hour), shortcode (the paybill) and passkey (the STK password's secret)
- payments, one-off and saved alike: POST /mpesa/stkpush/v1/processrequest asks the customer's
  phone to approve the amount; the answer's CheckoutRequestID is the provider reference and the
  charge is processing until the customer approves or declines. A saved method's token is the
  phone number (Daraja keeps no instruments), typed on the hosted page for a one-off payment
- look-ups: POST /mpesa/stkpushquery/v1/query (ResultCode 0 paid, anything else failed; a push
  still waiting on the customer is a 500 with errorCode 500.001.1001)
- callbacks: Daraja signs nothing, so the CallBackURL of each push carries the payment id and an
  HMAC of it keyed with the consumer secret (`?payment=…&token=…`); a callback without the right
  token is refused, and even a right one is only a hint: payments asks Daraja (`confirm`)
- idempotency: Daraja has none, and a second push would ask the customer to pay twice, so a push
  is repeated only when it never reached Daraja (no connection, or a 429); a push whose answer
  is lost stays processing until its callback (which names the payment) tells payments the
  CheckoutRequestID, and is then looked up like any other
- refunds: Daraja's reversal API answers by callback to an initiator's result URL; Billstream does
  not drive it yet, so a refund is refused with `refund_not_supported`
Amounts go in whole shillings: an amount with cents is refused before any push.
"""

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx

from shared.money import exponent

from . import http
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

PENDING_CODE = "500.001.1001"  # stkpushquery: the customer has not answered yet
_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}  # (api base, key, secret hash) → (token, expiry)


def msisdn(number: str) -> str:
    """A Kenyan mobile number as Daraja wants it: 2547XXXXXXXX (from 07…, +2547… or 2547…)."""
    digits = "".join(c for c in number if c.isdigit())
    if digits.startswith("0") and len(digits) == 10:
        digits = "254" + digits[1:]
    elif len(digits) == 9 and digits[0] in "17":
        digits = "254" + digits
    if len(digits) != 12 or not digits.startswith("254"):
        raise ProviderError("phone_invalid", "Enter the M-Pesa phone number as 07XXXXXXXX or +2547XXXXXXXX.")
    return digits


def callback_token(consumer_secret: str, payment_id: str) -> str:
    return hmac.new(consumer_secret.encode(), f"mpesa-callback:{payment_id}".encode(), hashlib.sha256).hexdigest()


class MpesaProvider:
    name = "mpesa"

    def __init__(
        self,
        credentials: dict,
        *,
        api_base: str = "https://api.safaricom.co.ke",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.consumer_key = credentials.get("consumerKey", "")
        self.consumer_secret = credentials.get("consumerSecret", "")
        self.shortcode, self.passkey = credentials.get("shortcode", ""), credentials.get("passkey", "")
        self.api_base, self.timeout, self.transport = api_base.rstrip("/"), timeout, transport

    def _cache_key(self) -> tuple[str, str, str]:
        # The secret is part of the key: a tenant naming another's consumer key never gets its token.
        return self.api_base, self.consumer_key, hashlib.sha256(self.consumer_secret.encode()).hexdigest()

    async def _token(self) -> str:
        key = self._cache_key()
        token, expires = _tokens.get(key, ("", 0.0))
        if time.monotonic() < expires:
            return token
        status_code, payload = await http.call(
            "M-Pesa",
            "GET",
            f"{self.api_base}/oauth/v1/generate",
            timeout=self.timeout,
            transport=self.transport,
            params={"grant_type": "client_credentials"},
            auth=(self.consumer_key, self.consumer_secret),
        )
        if status_code >= 400 or "access_token" not in payload:
            raise ProviderError(
                "credentials_invalid", payload.get("errorMessage") or "Daraja refused the consumer key."
            )
        # A minute early, so a token never expires between this check and Daraja's.
        _tokens[key] = (payload["access_token"], time.monotonic() + int(payload.get("expires_in", 3599)) - 60)
        return payload["access_token"]

    async def _stk(self, path: str, fields: dict, token: str | None = None) -> dict:
        """An STK call: `fields` with the paybill and the password of this second (Daraja's
        base64 of shortcode, passkey and timestamp)."""
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        password = base64.b64encode(f"{self.shortcode}{self.passkey}{stamp}".encode()).decode()
        body = {"BusinessShortCode": self.shortcode, "Password": password, "Timestamp": stamp, **fields}
        token = token or await self._token()
        status_code, payload = await http.call(
            "M-Pesa",
            "POST",
            self.api_base + path,
            timeout=self.timeout,
            transport=self.transport,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        if status_code >= 400:
            raise ProviderError(
                str(payload.get("errorCode") or "provider_error"),
                payload.get("errorMessage") or f"Daraja answered {status_code}",
            )
        return payload

    async def _push(self, req: ChargeRequest, phone: str) -> ChargeResult:
        if req.currency != "KES":
            raise ProviderError("currency_not_supported", "M-Pesa takes payments in KES only.")
        shillings, cents = divmod(req.amount, 10 ** exponent("KES"))
        if cents:
            raise ProviderError("amount_invalid", "M-Pesa takes whole shillings: the amount has cents.")
        query = urlencode({"payment": req.reference, "token": callback_token(self.consumer_secret, req.reference)})
        token = await self._token()  # outside the try: no token, no push sent
        try:
            answer = await self._stk(
                "/mpesa/stkpush/v1/processrequest",
                {
                    "TransactionType": "CustomerPayBillOnline",
                    "Amount": shillings,
                    "PartyA": phone,
                    "PartyB": self.shortcode,
                    "PhoneNumber": phone,
                    "CallBackURL": f"{req.callback_url}?{query}",
                    "AccountReference": req.reference[-12:],  # Daraja takes 12 characters
                    "TransactionDesc": "Invoice payment",
                },
                token,
            )
        except http.NotSent:
            raise  # retried: Daraja never saw it
        except ProviderUnavailable:
            # Daraja may have sent the prompt: never a second one. The callback names the payment.
            return ChargeResult("", "processing")
        if str(answer.get("ResponseCode")) != "0":
            raise ProviderError("push_refused", answer.get("ResponseDescription") or "Daraja refused the push.")
        return ChargeResult(answer["CheckoutRequestID"], "processing")

    async def start_payment(self, req: ChargeRequest) -> ChargeResult:
        if req.instrument is None or req.instrument.type != "mobile_money":
            raise ProviderError("phone_required", "M-Pesa needs the customer's phone number (mobile money).")
        return await self._push(req, msisdn(req.instrument.number))

    async def charge_saved_method(self, req: ChargeRequest) -> ChargeResult:
        return await self._push(req, msisdn(req.method_token or ""))

    async def save_method(self, customer_id: str, instrument: Instrument) -> SavedMethod:
        phone = msisdn(instrument.number)
        return SavedMethod(token=phone, type="mobile_money", label=f"M-Pesa •••• {phone[-4:]}")

    def verify_callback(
        self, headers: dict[str, str], body: bytes, query: dict[str, str] | None = None
    ) -> CallbackEvent:
        query = query or {}
        payment_id, token = query.get("payment", ""), query.get("token", "")
        if not self.consumer_secret or not payment_id:
            raise SignatureInvalid("no consumer secret, or no payment in the callback URL")
        if not hmac.compare_digest(callback_token(self.consumer_secret, payment_id).encode(), token.encode()):
            raise SignatureInvalid("the callback URL's token does not match")
        try:
            callback = json.loads(body)["Body"]["stkCallback"]
            checkout_id = str(callback["CheckoutRequestID"])
            result_code = str(callback["ResultCode"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SignatureInvalid(f"callback body malformed: {exc!r}") from exc
        return CallbackEvent(
            event_id=f"{checkout_id}:{result_code}",
            payment_id=payment_id,
            provider_reference=checkout_id,
            status="succeeded" if result_code == "0" else "failed",
            confirm=True,
        )

    async def refund(self, idempotency_key: str, provider_reference: str, amount: int, currency: str) -> RefundResult:
        raise ProviderError(
            "refund_not_supported",
            "M-Pesa payments are given back by a reversal or a B2C payment from the M-Pesa portal.",
        )

    async def get_status(self, provider_reference: str) -> ChargeResult:
        if not provider_reference:  # the push's answer was lost: only its callback can tell
            return ChargeResult("", "processing")
        try:
            answer = await self._stk("/mpesa/stkpushquery/v1/query", {"CheckoutRequestID": provider_reference})
        except http.ServerError as exc:
            if str(exc.payload.get("errorCode")) == PENDING_CODE:
                return ChargeResult(provider_reference, "processing")
            raise
        code = "" if answer.get("ResultCode") is None else str(answer["ResultCode"])  # Daraja sends "0" or 0
        if code in ("", "4999"):  # no decision yet (4999: still under processing)
            return ChargeResult(provider_reference, "processing")
        if code == "0":
            return ChargeResult(provider_reference, "succeeded")
        return ChargeResult(
            provider_reference, "failed", failure_code=f"mpesa_{code}", failure_reason=answer.get("ResultDesc")
        )

    async def check_credentials(self) -> None:
        _tokens.pop(self._cache_key(), None)  # ask Daraja, not the cache
        await self._token()
