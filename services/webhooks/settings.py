from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment: BILLSTREAM_WEBHOOKS_DATABASE_URL, BILLSTREAM_WEBHOOKS_HTTP_PORT, ..."""

    model_config = SettingsConfigDict(env_prefix="BILLSTREAM_WEBHOOKS_", extra="ignore")

    service_name: str = "webhooks"
    database_url: str = "postgresql://billstream_webhooks:billstream_webhooks@127.0.0.1:55432/billstream_webhooks"
    http_port: int = 8004
    # Endpoints on private, loopback or link-local addresses are refused unless this is set
    # (local development and tests set it; a public deployment should not).
    allow_private_urls: bool = False
    delivery_timeout_s: float = 15.0
