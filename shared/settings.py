"""Settings every service shares; each service subclasses with its own env prefix."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Read from environment variables named BILLSTREAM_<SERVICE>_<FIELD> (see each service)."""

    model_config = SettingsConfigDict(env_prefix="BILLSTREAM_", extra="ignore")

    service_name: str = "billstream"
    database_url: str = "postgresql://postgres@127.0.0.1:55432/postgres"
    kafka_bootstrap: str = "127.0.0.1:59092"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # JSON logs unless stderr is a terminal; force with true/false.
    log_json: bool | None = None
    log_level: str = "INFO"
    db_pool_min: int = 1
    db_pool_max: int = 10
    # How often the relay and projection runners poll when no notification arrives.
    poll_interval_s: float = 1.0
