"""Stripe through the official `stripe` library (StripeClient, async methods over httpx).

- one-off payments: a Checkout Session (Stripe's hosted form); the customer is redirected there.
  It expires at the request's `expires_at`; its look-up asks the session (paid? expired?), not a
  PaymentIntent, and `checkout.session.expired` ends the payment as failed `expired`
- saved methods: a PaymentIntent confirmed off-session (token "cus_…:pm_…" or "pm_…")
- callbacks: Stripe-Signature checked by stripe's own construct_event (HMAC-SHA256, 5 min window)
- every request carries our idempotency key (Stripe's Idempotency-Key header). A retry whose
  parameters differ from the first request's (say the invoice's e-mail changed) is refused with
  400 `idempotency_error`: the charge is then looked up by our payment id in its metadata, and
  until it is found the refusal is KeyAlreadyUsed (retried), never a decline. A retry while the
  first request still runs gets 409, retried like any unavailability.
`api_base` points the library elsewhere (tests use a local server that speaks Stripe's API).
"""

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import stripe

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
    expired,
)

STATUS = {
    "succeeded": "succeeded",
    "processing": "processing",
    "requires_payment_method": "failed",
    "canceled": "failed",
    "requires_action": "requires_action",
    "requires_confirmation": "processing",
    "requires_capture": "processing",
}
EVENTS = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "failed",
    "payment_intent.processing": "processing",
    "payment_intent.canceled": "failed",
}


# Stripe takes a Checkout Session's expires_at only between 30 minutes and 24 hours from now.
SESSION_MIN_S, SESSION_MAX_S = 30 * 60 + 60, 24 * 3600 - 60  # a minute inside, for clock skew


def _session_expiry(expires_at: datetime | None) -> int | None:
    """Our deadline moved into Stripe's window: a deadline closer than 30 minutes keeps the page
    open a little longer on Stripe (a late payment still counts: success wins over expiry)."""
    if expires_at is None:
        return None
    now = datetime.now(UTC)
    return int(
        min(max(expires_at, now + timedelta(seconds=SESSION_MIN_S)), now + timedelta(seconds=SESSION_MAX_S)).timestamp()
    )


class StripeProvider:
    name = "stripe"

    def __init__(
        self, secret_key: str, webhook_secret: str | None, *, api_base: str | None = None, timeout: float = 10.0
    ) -> None:
        self.webhook_secret = webhook_secret
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.HTTPXClient(timeout=timeout),
            max_network_retries=0,
        )

    async def _call(self, fn, *args, **kwargs):
        try:
            return (await fn(*args, **kwargs)).to_dict()  # plain dicts from here on
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProviderUnavailable(
                "provider_unavailable", f"Stripe did not answer: {exc.user_message or exc}"
            ) from exc
        except stripe.APIError as exc:  # Stripe's own 5xx, and 409: a request with this key is still running
            raise ProviderUnavailable("provider_unavailable", str(exc)) from exc
        except stripe.CardError:
            raise  # the caller turns it into a failed charge
        except stripe.IdempotencyError as exc:  # the key was used before: a refusal of the retry, not of the charge
            raise KeyAlreadyUsed(
                "idempotency_key_used", f"Stripe refused the retry: {exc.user_message or exc}"
            ) from exc
        except stripe.StripeError as exc:
            raise ProviderError(exc.code or "provider_error", exc.user_message or str(exc)) from exc

    @staticmethod
    def _result(intent) -> ChargeResult:
        error = intent.get("last_payment_error") or {}
        return ChargeResult(
            provider_reference=intent["id"],
            status=STATUS.get(intent["status"], "processing"),
            failure_code=error.get("decline_code") or error.get("code"),
            failure_reason=error.get("message"),
        )

    async def start_payment(self, req: ChargeRequest) -> ChargeResult:
        if req.instrument is not None:
            raise ProviderError("instrument_not_supported", "Stripe takes card details on its own page.")
        back = req.return_url or req.callback_url
        try:
            session = await self._call(
                self.client.v1.checkout.sessions.create_async,
                params={
                    "mode": "payment",
                    "client_reference_id": req.reference,
                    "success_url": back,
                    "cancel_url": back,
                    "customer_email": req.customer_email,
                    "expires_at": _session_expiry(req.expires_at),
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": req.currency.lower(),
                                "unit_amount": req.amount,
                                "product_data": {"name": f"Payment {req.reference}"},
                            },
                        }
                    ],
                    "metadata": {"payment_id": req.reference},
                    "payment_intent_data": {"metadata": {"payment_id": req.reference}},
                },
                options={"idempotency_key": req.idempotency_key},
            )
        except KeyAlreadyUsed as refused:
            # The first request made a session we never heard of (sessions cannot be searched);
            # a customer who paid there left a PaymentIntent with our payment id.
            intent = await self._intent_of(req.reference, refused)
            if intent["status"] not in ("succeeded", "processing"):
                raise  # not paid (yet): they may still pay on that session's page
            return self._result(intent)
        return ChargeResult(provider_reference=session["id"], status="requires_action", redirect_url=session["url"])

    async def charge_saved_method(self, req: ChargeRequest) -> ChargeResult:
        customer, _, method = (req.method_token or "").rpartition(":")
        params = {
            "amount": req.amount,
            "currency": req.currency.lower(),
            "payment_method": method,
            "confirm": True,
            "off_session": True,
            "metadata": {"payment_id": req.reference},
        }
        if customer:
            params["customer"] = customer
        try:
            intent = await self._call(
                self.client.v1.payment_intents.create_async,
                params=params,
                options={"idempotency_key": req.idempotency_key},
            )
        except KeyAlreadyUsed as refused:  # the first request with this key made the intent: that is the answer
            intent = await self._intent_of(req.reference, refused)
        except stripe.CardError as exc:  # a decline: Stripe answers 402 with the intent in the error
            body = cast(dict[str, Any], exc.json_body or {})  # the JSON object Stripe answered with
            intent = body.get("error", {}).get("payment_intent") or {}
            return ChargeResult(
                provider_reference=intent.get("id", ""),
                status="failed",
                failure_code=exc.code
                if exc.code != "card_declined"
                else body.get("error", {}).get("decline_code") or exc.code,
                failure_reason=exc.user_message,
            )
        return self._result(intent)

    async def save_method(self, customer_id: str, instrument: Instrument) -> SavedMethod:
        raise ProviderError("instrument_not_supported", "Save Stripe methods with Stripe.js and send the pm_ token.")

    def verify_callback(
        self, headers: dict[str, str], body: bytes, query: dict[str, str] | None = None
    ) -> CallbackEvent:
        if not self.webhook_secret:  # anyone can sign with an empty key
            raise SignatureInvalid("no webhook secret is configured")
        try:
            event = stripe.Webhook.construct_event(body, headers.get("stripe-signature"), self.webhook_secret).to_dict()
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise SignatureInvalid(str(exc)) from exc
        obj = event["data"]["object"]
        metadata = obj.get("metadata") or {}
        if event["type"] == "checkout.session.expired":  # the customer left Stripe's form unpaid
            gone = expired(obj["id"])
            return CallbackEvent(
                event_id=event["id"],
                payment_id=metadata.get("payment_id"),
                provider_reference=obj["id"],
                status=gone.status,
                failure_code=gone.failure_code,
                failure_reason=gone.failure_reason,
            )
        error = obj.get("last_payment_error") or {}
        return CallbackEvent(
            event_id=event["id"],
            payment_id=metadata.get("payment_id"),
            provider_reference=obj.get("id"),
            status=EVENTS.get(event["type"]),
            failure_code=error.get("decline_code") or error.get("code"),
            failure_reason=error.get("message"),
        )

    async def refund(self, idempotency_key: str, provider_reference: str, amount: int, currency: str) -> RefundResult:
        refund = await self._call(
            self.client.v1.refunds.create_async,
            params={"payment_intent": provider_reference, "amount": amount},
            options={"idempotency_key": idempotency_key},
        )
        status = refund["status"]
        return RefundResult(
            provider_reference=refund["id"],
            status="succeeded"
            if status == "succeeded"
            else "failed"
            if status in ("failed", "canceled")
            else "processing",
        )

    async def _intent_of(self, payment_id: str, refused: KeyAlreadyUsed) -> dict:
        """The PaymentIntent carrying our payment id in its metadata. Stripe's search lags writes
        (usually under a minute): until it shows one, the refusal stands and the job is retried."""
        found = await self._call(
            self.client.v1.payment_intents.search_async, params={"query": f"metadata['payment_id']:'{payment_id}'"}
        )
        if not found["data"]:
            raise refused
        return found["data"][0]

    async def get_status(self, provider_reference: str) -> ChargeResult:
        if provider_reference.startswith("cs_"):  # a hosted checkout: its session says whether it was paid
            return self._session_result(
                await self._call(
                    self.client.v1.checkout.sessions.retrieve_async,
                    provider_reference,
                    params={"expand": ["payment_intent"]},
                )
            )
        return self._result(await self._call(self.client.v1.payment_intents.retrieve_async, provider_reference))

    async def check_credentials(self) -> None:
        await self._call(self.client.v1.balance.retrieve_async)

    @classmethod
    def _session_result(cls, session: dict) -> ChargeResult:
        """expired: never paid. complete: its PaymentIntent says how it went (and becomes the
        reference, which refunds need). open: the customer has not paid yet."""
        if session["status"] == "expired":
            return expired(session["id"])
        if session["status"] == "complete":
            intent = session.get("payment_intent")
            return cls._result(intent) if intent else ChargeResult(session["id"], "processing")
        return ChargeResult(session["id"], "requires_action", redirect_url=session.get("url"))
