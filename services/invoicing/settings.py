from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment: BILLSTREAM_INVOICING_DATABASE_URL, BILLSTREAM_INVOICING_HTTP_PORT, ..."""

    model_config = SettingsConfigDict(env_prefix="BILLSTREAM_INVOICING_", extra="ignore")

    service_name: str = "invoicing"
    database_url: str = "postgresql://billstream_invoicing:billstream_invoicing@127.0.0.1:55432/billstream_invoicing"
    http_port: int = 8001
