from pydantic_settings import SettingsConfigDict

from shared import topics
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment: BILLSTREAM_DUNNING_DATABASE_URL, BILLSTREAM_DUNNING_HTTP_PORT, ..."""

    model_config = SettingsConfigDict(env_prefix="BILLSTREAM_DUNNING_", extra="ignore")

    service_name: str = "dunning"
    database_url: str = "postgresql://billstream_dunning:billstream_dunning@127.0.0.1:55432/billstream_dunning"
    http_port: int = 8003
    # Topics are settings so tests can run a dunning process on topics of their own.
    invoices_topic: str = topics.INVOICES
    payments_topic: str = topics.PAYMENTS
    dunning_topic: str = topics.DUNNING
    # Upper bound on how late a timer fires when nothing wakes the engine earlier.
    timer_poll_interval_s: float = 0.5
