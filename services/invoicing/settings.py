from shared import paylinks
from shared.settings import ServiceSettings


class Settings(ServiceSettings, service="invoicing", port=8001):
    """Environment: BILLSTREAM_INVOICING_DATABASE_URL, BILLSTREAM_INVOICING_HTTP_PORT, ..."""

    DEV_SECRETS = {"pdf_signing_secret": "local-development-only", "pay_link_secret": paylinks.DEV_SECRET}

    # Where clients reach the platform: signed PDF links and invoices' paymentUrl point here.
    public_url: str = "http://localhost:3000"
    # Signs each finalized invoice's lasting paymentUrl (shared/paylinks.py): the same value as
    # BILLSTREAM_PAYMENTS_PAY_LINK_SECRET, which checks it.
    pay_link_secret: str = paylinks.DEV_SECRET
    # Signs PDF download links. Set a long random value in every real deployment.
    pdf_signing_secret: str = "local-development-only"
    pdf_url_ttl_s: int = 3600
    # The link invoice.paid carries for the receipt e-mail, which may be retried for hours.
    receipt_pdf_url_ttl_s: int = 7 * 24 * 3600
    # How long mark-paid waits for payments to record the offline payment's `manual` payment
    # (so GET /api/payments lists it once the call answers) before answering anyway.
    offline_payment_wait_s: float = 5.0
    # The longest a due timer (a subscription's renewal) waits when no notification wakes the runner.
    timer_poll_interval_s: float = 1.0
