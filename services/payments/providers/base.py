"""The one interface every payment provider adapter implements, and the values it speaks.

Adapters never touch the database or the event store: they turn a request into the provider's
API call and the provider's answer (or signed callback) back into these values. Every request
that moves money carries an idempotency key, so a retried call never charges twice.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

# Charge states as adapters report them (the payment aggregate maps them to its statuses).
PROCESSING, SUCCEEDED, FAILED, REQUIRES_ACTION = "processing", "succeeded", "failed", "requires_action"


class ProviderError(Exception):
    """The provider refused the request (bad credentials, invalid instrument, ...): not retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ProviderUnavailable(ProviderError):
    """Timeout, connection error or 5xx: retry later with the same idempotency key."""


class KeyAlreadyUsed(ProviderUnavailable):
    """The provider refused a retry because its idempotency key (Paystack: the reference) was used
    before, with other parameters, and the charge could not be looked up yet. Not a decline: the
    charge may exist, so the job stays pending and is retried with the same key."""


class SignatureInvalid(Exception):
    """A callback whose signature does not verify (forged, altered or too old)."""


@dataclass(frozen=True)
class Instrument:
    """A one-off instrument typed on the hosted page (sandbox test numbers)."""

    type: str  # card | mobile_money
    number: str


@dataclass(frozen=True)
class ChargeRequest:
    idempotency_key: str
    reference: str  # our payment id: the provider echoes it in callbacks
    amount: int  # minor units
    currency: str
    callback_url: str
    instrument: Instrument | None = None
    method_token: str | None = None  # a saved method's provider token
    customer_email: str | None = None
    return_url: str | None = None  # where a redirecting provider sends the customer back
    expires_at: datetime | None = None  # when a provider's hosted form stops taking the payment


@dataclass(frozen=True)
class ChargeResult:
    provider_reference: str
    status: str  # processing | succeeded | failed | requires_action
    redirect_url: str | None = None
    failure_code: str | None = None
    failure_reason: str | None = None
    # (amount in minor units, currency) the provider says was paid, when it says: a succeeded
    # charge for anything else is recorded as failed `amount_mismatch`.
    charged: tuple[int, str] | None = None


EXPIRED = "expired"  # the failure code of a hosted checkout the customer left unpaid


def expired(provider_reference: str) -> ChargeResult:
    return ChargeResult(
        provider_reference,
        FAILED,
        failure_code=EXPIRED,
        failure_reason="The customer did not pay before the checkout expired.",
    )


@dataclass(frozen=True)
class RefundResult:
    provider_reference: str
    status: str  # succeeded | processing | failed


@dataclass(frozen=True)
class CallbackEvent:
    """A verified provider callback, reduced to what payments needs."""

    event_id: str  # the provider's event id: duplicates are dropped by it
    payment_id: str | None  # our reference, echoed by the provider
    provider_reference: str | None
    status: str | None  # processing | succeeded | failed, or None for events we do not act on
    failure_code: str | None = None
    failure_reason: str | None = None
    # The status is only a hint: payments asks the provider (get_status) before acting on it, for
    # providers whose callbacks carry no signature over what they say (Daraja) or whose docs
    # say to verify first (Flutterwave).
    confirm: bool = False
    charged: tuple[int, str] | None = None  # as ChargeResult's, once confirmed


@dataclass(frozen=True)
class SavedMethod:
    token: str
    type: str
    label: str  # e.g. "Visa •••• 4242", shown to people
    extra: dict = field(default_factory=dict)


class Provider(Protocol):
    name: str

    async def start_payment(self, req: ChargeRequest) -> ChargeResult:
        """Begin a one-off payment; may answer requires_action with a redirect_url."""

    async def charge_saved_method(self, req: ChargeRequest) -> ChargeResult:
        """Charge a saved method (req.method_token) without the customer present."""

    async def save_method(self, customer_id: str, instrument: Instrument) -> SavedMethod:
        """Turn an instrument into a reusable token."""

    def verify_callback(
        self, headers: dict[str, str], body: bytes, query: dict[str, str] | None = None
    ) -> CallbackEvent:
        """Check the callback's signature (raise SignatureInvalid) and parse it; `query`: the
        callback URL's parameters (where a provider that signs nothing carries our token)."""

    async def refund(
        self, idempotency_key: str, provider_reference: str, amount: int, currency: str
    ) -> RefundResult: ...

    async def get_status(self, provider_reference: str) -> ChargeResult: ...

    async def check_credentials(self) -> None:
        """One authenticated read; ProviderError if the provider refuses the credentials."""
