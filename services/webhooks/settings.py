from shared import paylinks, topics
from shared.settings import ServiceSettings

# Local default only, so a fresh checkout runs: deployments set BILLSTREAM_WEBHOOKS_SECRETS_KEYS
# (comma-separated Fernet keys, newest first) to encrypt endpoint secrets at rest.
DEV_SECRETS_KEY = "VRlVRo0NMM3L4tJ3-WKVGns4lSIU299x4V1Dwq7lfWw="


class Settings(ServiceSettings, service="webhooks", port=8004):
    """Environment: BILLSTREAM_WEBHOOKS_DATABASE_URL, BILLSTREAM_WEBHOOKS_HTTP_PORT, ..."""

    DEV_SECRETS = {"pay_link_secret": paylinks.DEV_SECRET, "secrets_keys": DEV_SECRETS_KEY}

    # The topics whose events go to subscribers (JSON list in the environment; tests use their own).
    public_topics: list[str] = [topics.INVOICES, topics.PAYMENTS, topics.DUNNING, topics.SUBSCRIPTIONS]
    # Where this service publishes its own events (webhook_endpoint.disabled).
    events_topic: str = topics.WEBHOOKS

    # Endpoints on private, loopback or link-local addresses are refused unless this is set
    # (local development and tests set it; a public deployment should not).
    allow_private_urls: bool = False
    # A 2xx within this many seconds is a success.
    delivery_timeout_s: float = 15.0
    # A claimed delivery is retried after this long if its process died mid-attempt.
    delivery_lease_s: float = 60.0
    delivery_concurrency: int = 50
    # At most this many attempts in flight per endpoint, so a slow one cannot take every slot.
    per_endpoint_concurrency: int = 5
    # An endpoint whose attempts have all failed for this long is disabled (5 days).
    disable_after_failing_s: float = 5 * 24 * 3600
    # Encrypt endpoint secrets at rest (shared/vault.py): the first key encrypts, every key decrypts.
    secrets_keys: str = DEV_SECRETS_KEY
    # The old secret keeps signing alongside the new one this long after a rotation.
    secret_overlap_s: float = 24 * 3600
    # Seconds before attempt 2, 3, ... (each with jitter): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    retry_schedule_s: list[float] = [5, 300, 1800, 7200, 18000, 36000, 36000]

    # Finished deliveries, kept events and sent e-mails are deleted after this many days.
    retention_days: int = 30

    # Customer e-mails.
    emails_enabled: bool = True
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 52525
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout_s: float = 20.0
    email_from: str = "billing@billstream.localhost"
    # Seconds before a failed e-mail is tried again: 30 s, 5 min, 30 min, 2 h, 6 h; then kept as failed.
    email_retry_schedule_s: list[float] = [30, 300, 1800, 7200, 21600]
    email_locale: str = "en"
    # Pay links, when the event carries none: <public_url>/pay/invoice/<id>?sig=..., signed with
    # the secret the payments service checks them with (shared/paylinks.py).
    public_url: str = "http://localhost:3000"
    pay_link_secret: str = paylinks.DEV_SECRET
