from shared import topics
from shared.settings import ServiceSettings


class Settings(ServiceSettings, service="dunning", port=8003):
    """Environment: BILLSTREAM_DUNNING_DATABASE_URL, BILLSTREAM_DUNNING_HTTP_PORT, ..."""

    # Topics are settings so tests can run a dunning process on topics of their own.
    invoices_topic: str = topics.INVOICES
    payments_topic: str = topics.PAYMENTS
    dunning_topic: str = topics.DUNNING
    # Upper bound on how late a timer fires when nothing wakes the engine earlier.
    timer_poll_interval_s: float = 0.5
