"""Build a provider adapter for an account (its decrypted credentials and the settings)."""

from .base import Provider, ProviderError
from .sandbox import SandboxProvider

KNOWN = ("sandbox", "stripe", "paystack", "flutterwave", "mpesa")
# The credentials each provider's account must carry (the sandbox's default to the installation's).
REQUIRED = {
    "sandbox": (),
    "stripe": ("secretKey", "webhookSecret"),  # without the whsec_… secret no callback verifies
    "paystack": ("secretKey",),
    "flutterwave": ("secretKey", "webhookSecret"),  # webhookSecret: the dashboard's secret hash
    "mpesa": ("consumerKey", "consumerSecret", "shortcode", "passkey"),
}
# Providers whose instruments the hosted page takes itself (the rest have their own page).
ON_OUR_PAGE = {"sandbox": ("card", "mobile_money"), "mpesa": ("mobile_money",)}


def build(provider: str, credentials: dict, settings) -> Provider:
    if provider == "sandbox":
        return SandboxProvider(
            settings.sandbox_api_url,
            credentials.get("secretKey", settings.sandbox_secret_key),
            credentials.get("webhookSecret", settings.sandbox_webhook_secret),
            timeout=settings.provider_timeout_s,
        )
    if provider == "stripe":
        from .stripe_adapter import StripeProvider

        # No secret, no verified callbacks (the adapter refuses them), never an empty key.
        return StripeProvider(
            credentials["secretKey"],
            credentials.get("webhookSecret"),
            api_base=settings.stripe_api_base,
            timeout=settings.provider_timeout_s,
        )
    if provider == "paystack":
        from .paystack import PaystackProvider

        return PaystackProvider(
            credentials["secretKey"], api_base=settings.paystack_api_base, timeout=settings.provider_timeout_s
        )
    if provider == "flutterwave":
        from .flutterwave import FlutterwaveProvider

        return FlutterwaveProvider(
            credentials["secretKey"],
            credentials.get("webhookSecret"),
            api_base=settings.flutterwave_api_base,
            timeout=settings.provider_timeout_s,
        )
    if provider == "mpesa":
        from .mpesa import MpesaProvider

        return MpesaProvider(credentials, api_base=settings.mpesa_api_base, timeout=settings.provider_timeout_s)
    raise ProviderError("provider_unknown", f"Unknown provider '{provider}'.")
