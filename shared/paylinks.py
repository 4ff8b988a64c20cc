"""Pay links in customer e-mails: /pay/invoice/<invoiceId>?sig=<token>. The webhooks service
signs them, the payments service checks them and opens a checkout session for the invoice, so a
link works for as long as the invoice is payable without anyone creating a session first, and an
invoice id alone (which is not secret) opens nothing. Both services must share the secret (a key
list, newest first: shared/signing.py).

The token carries when it was signed: a link expires after TTL_S (a receipt or a reminder may
sit in a mailbox for weeks, but not forever). An invoice's own `paymentUrl` (ZevPay's
payment_url, which invoicing signs with the same secret) is lasting: its token carries no time,
and it opens the invoice's page for as long as the invoice exists (a receipt once paid). Rotating
the secret ends every link.
"""

from urllib.parse import quote

from shared import signing

# Local default only, so a fresh checkout works: deployments set BILLSTREAM_PAYMENTS_PAY_LINK_SECRET
# and BILLSTREAM_WEBHOOKS_PAY_LINK_SECRET to one shared random value.
DEV_SECRET = "billstream-local-pay-links"
PATH = "/pay/invoice/{invoiceId}?sig={signature}"
PURPOSE = "pay-link"
LASTING_PURPOSE = "payment-url"
TTL_S = 90 * 24 * 3600


def signature(secret: str, invoice_id: str) -> str:
    return signing.sign_timed(secret, PURPOSE, invoice_id)


def problem(secret: str, invoice_id: str, sig: str, *, max_age_s: int = TTL_S) -> str | None:
    """None if the link is good; otherwise "expired" or "invalid"."""
    if "." not in sig:  # a lasting link: a signature alone, no time
        return None if signing.verify(secret, LASTING_PURPOSE, invoice_id, sig) else "invalid"
    return signing.check_timed(secret, PURPOSE, invoice_id, sig, max_age_s)


def valid(secret: str, invoice_id: str, sig: str) -> bool:
    return problem(secret, invoice_id, sig) is None


def path(secret: str, invoice_id: str) -> str:
    return PATH.format(invoiceId=quote(invoice_id, safe=""), signature=signature(secret, invoice_id))


def lasting_path(secret: str, invoice_id: str) -> str:
    lasting = signing.sign(secret, LASTING_PURPOSE, invoice_id)
    return PATH.format(invoiceId=quote(invoice_id, safe=""), signature=lasting)
