from shared import paylinks, topics
from shared.settings import ServiceSettings

# Local default only, so a fresh checkout runs: every real deployment sets
# BILLSTREAM_PAYMENTS_CREDENTIALS_KEYS (comma-separated Fernet keys, newest first).
DEV_CREDENTIALS_KEY = "YmlsbHN0cmVhbS1sb2NhbC1kZXYta2V5LW5vdC1zZWM="


class Settings(ServiceSettings, service="payments", port=8002):
    """Environment: BILLSTREAM_PAYMENTS_DATABASE_URL, BILLSTREAM_PAYMENTS_HTTP_PORT, ..."""

    DEV_SECRETS = {
        "pay_link_secret": paylinks.DEV_SECRET,
        "credentials_keys": DEV_CREDENTIALS_KEY,
        "sandbox_secret_key": "sk_sandbox_local",
        "sandbox_webhook_secret": "whsec_sandbox_local",
    }

    # Topics (overridable so tests can run a whole payments process on their own topics).
    payments_topic: str = topics.PAYMENTS
    invoices_topic: str = topics.INVOICES
    dunning_topic: str = topics.DUNNING

    # Where customers open checkout links (the gateway), and where providers call us back.
    public_url: str = "http://localhost:3000"
    callback_url: str | None = None  # default: this process, http://127.0.0.1:<http_port>
    checkout_ttl_hours: int = 72
    # How long a one-off payment has to be paid on a provider's hosted form (a Stripe Checkout
    # Session, a Paystack page) before it ends as failed `expired`. Stripe takes 30 min to 24 h.
    hosted_checkout_expiry_s: float = 86400
    # Checks the signed pay links in customer e-mails; the webhooks service signs with the same.
    pay_link_secret: str = paylinks.DEV_SECRET

    credentials_keys: str = DEV_CREDENTIALS_KEY

    # The sandbox provider (served by this process under /sandbox/v1).
    sandbox_enabled: bool = True
    sandbox_url: str | None = None  # default: http://127.0.0.1:<http_port>/sandbox/v1
    sandbox_secret_key: str = "sk_sandbox_local"
    sandbox_webhook_secret: str = "whsec_sandbox_local"
    sandbox_delay_s: float = 0.5  # until an ordinary charge settles
    sandbox_slow_s: float = 4.0  # until a timing-out or unapproved charge settles

    provider_timeout_s: float = 2.0  # per provider HTTP call; a timeout is retried with the same key
    stripe_api_base: str | None = None  # tests point the stripe library at a local server
    paystack_api_base: str = "https://api.paystack.co"
    flutterwave_api_base: str = "https://api.flutterwave.com/v3"
    mpesa_api_base: str = "https://api.safaricom.co.ke"  # Daraja's sandbox: https://sandbox.safaricom.co.ke

    def insecure_secrets(self) -> list[str]:
        found = super().insecure_secrets()
        return found if self.sandbox_enabled else [v for v in found if "_SANDBOX_" not in v]

    @property
    def own_url(self) -> str:
        return self.callback_url or f"http://127.0.0.1:{self.http_port}"

    @property
    def sandbox_api_url(self) -> str:
        return self.sandbox_url or f"http://127.0.0.1:{self.http_port}/sandbox/v1"
