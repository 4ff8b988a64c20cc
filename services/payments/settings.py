from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment: BILLSTREAM_PAYMENTS_DATABASE_URL, BILLSTREAM_PAYMENTS_HTTP_PORT, ..."""

    model_config = SettingsConfigDict(env_prefix="BILLSTREAM_PAYMENTS_", extra="ignore")

    service_name: str = "payments"
    database_url: str = "postgresql://billstream_payments:billstream_payments@127.0.0.1:55432/billstream_payments"
    http_port: int = 8002
