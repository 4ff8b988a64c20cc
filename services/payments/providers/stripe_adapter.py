"""Stripe through the official `stripe` library (StripeClient, async methods over httpx).

- one-off payments: a Checkout Session (Stripe's hosted form); the customer is redirected there
- saved methods: a PaymentIntent confirmed off-session (token "cus_…:pm_…" or "pm_…")
- callbacks: Stripe-Signature checked by stripe's own construct_event (HMAC-SHA256, 5 min window)
- every request carries our idempotency key (Stripe's Idempotency-Key header)
`api_base` points the library elsewhere (tests use a local server that speaks Stripe's API).
"""

import stripe

from .base import (
    CallbackEvent, ChargeRequest, ChargeResult, Instrument, ProviderError, ProviderUnavailable,
    RefundResult, SavedMethod, SignatureInvalid,
)

STATUS = {"succeeded": "succeeded", "processing": "processing", "requires_payment_method": "failed",
          "canceled": "failed", "requires_action": "requires_action", "requires_confirmation": "processing",
          "requires_capture": "processing"}
EVENTS = {"payment_intent.succeeded": "succeeded", "payment_intent.payment_failed": "failed",
          "payment_intent.processing": "processing", "payment_intent.canceled": "failed"}


class StripeProvider:
    name = "stripe"

    def __init__(self, secret_key: str, webhook_secret: str | None, *, api_base: str | None = None,
                 timeout: float = 10.0) -> None:
        self.webhook_secret = webhook_secret
        self.client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.HTTPXClient(timeout=timeout), max_network_retries=0)

    async def _call(self, fn, *args, **kwargs):
        try:
            return (await fn(*args, **kwargs)).to_dict()  # plain dicts from here on
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProviderUnavailable("provider_unavailable", f"Stripe did not answer: {exc.user_message or exc}") from exc
        except stripe.APIError as exc:  # Stripe's own 5xx
            raise ProviderUnavailable("provider_unavailable", str(exc)) from exc
        except stripe.CardError:
            raise  # the caller turns it into a failed charge
        except stripe.StripeError as exc:
            raise ProviderError(exc.code or "provider_error", exc.user_message or str(exc)) from exc

    @staticmethod
    def _result(intent) -> ChargeResult:
        error = intent.get("last_payment_error") or {}
        return ChargeResult(provider_reference=intent["id"], status=STATUS.get(intent["status"], "processing"),
                            failure_code=error.get("decline_code") or error.get("code"),
                            failure_reason=error.get("message"))

    async def start_payment(self, req: ChargeRequest) -> ChargeResult:
        if req.instrument is not None:
            raise ProviderError("instrument_not_supported", "Stripe takes card details on its own page.")
        back = req.return_url or req.callback_url
        session = await self._call(self.client.v1.checkout.sessions.create_async, params={
            "mode": "payment", "client_reference_id": req.reference,
            "success_url": back, "cancel_url": back,
            "customer_email": req.customer_email,
            "line_items": [{"quantity": 1, "price_data": {
                "currency": req.currency.lower(), "unit_amount": req.amount,
                "product_data": {"name": f"Payment {req.reference}"}}}],
            "metadata": {"payment_id": req.reference},
            "payment_intent_data": {"metadata": {"payment_id": req.reference}},
        }, options={"idempotency_key": req.idempotency_key})
        return ChargeResult(provider_reference=session["id"], status="requires_action", redirect_url=session["url"])

    async def charge_saved_method(self, req: ChargeRequest) -> ChargeResult:
        customer, _, method = (req.method_token or "").rpartition(":")
        params = {"amount": req.amount, "currency": req.currency.lower(), "payment_method": method,
                  "confirm": True, "off_session": True, "metadata": {"payment_id": req.reference}}
        if customer:
            params["customer"] = customer
        try:
            intent = await self._call(self.client.v1.payment_intents.create_async, params=params,
                                      options={"idempotency_key": req.idempotency_key})
        except stripe.CardError as exc:  # a decline: Stripe answers 402 with the intent in the error
            intent = (exc.json_body or {}).get("error", {}).get("payment_intent") or {}
            return ChargeResult(provider_reference=intent.get("id", ""), status="failed",
                                failure_code=exc.code if exc.code != "card_declined" else
                                (exc.json_body or {}).get("error", {}).get("decline_code") or exc.code,
                                failure_reason=exc.user_message)
        return self._result(intent)

    async def save_method(self, customer_id: str, instrument: Instrument) -> SavedMethod:
        raise ProviderError("instrument_not_supported", "Save Stripe methods with Stripe.js and send the pm_ token.")

    def verify_callback(self, headers: dict[str, str], body: bytes) -> CallbackEvent:
        if not self.webhook_secret:  # anyone can sign with an empty key
            raise SignatureInvalid("no webhook secret is configured")
        try:
            event = stripe.Webhook.construct_event(body, headers.get("stripe-signature"), self.webhook_secret).to_dict()
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise SignatureInvalid(str(exc)) from exc
        obj = event["data"]["object"]
        metadata = obj.get("metadata") or {}
        error = obj.get("last_payment_error") or {}
        return CallbackEvent(
            event_id=event["id"], payment_id=metadata.get("payment_id"), provider_reference=obj.get("id"),
            status=EVENTS.get(event["type"]),
            failure_code=error.get("decline_code") or error.get("code"), failure_reason=error.get("message"))

    async def refund(self, idempotency_key: str, provider_reference: str, amount: int, currency: str) -> RefundResult:
        refund = await self._call(self.client.v1.refunds.create_async,
                                  params={"payment_intent": provider_reference, "amount": amount},
                                  options={"idempotency_key": idempotency_key})
        status = refund["status"]
        return RefundResult(provider_reference=refund["id"],
                            status="succeeded" if status == "succeeded" else "failed" if status in ("failed", "canceled") else "processing")

    async def get_status(self, provider_reference: str) -> ChargeResult:
        return self._result(await self._call(self.client.v1.payment_intents.retrieve_async, provider_reference))
