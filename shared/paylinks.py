"""Pay links in customer e-mails: /pay/invoice/<invoiceId>?sig=<token>. The webhooks service
signs them, the payments service checks them and opens a checkout session for the invoice, so a
link works for as long as the invoice is payable without anyone creating a session first, and an
invoice id alone (which is not secret) opens nothing. Both services must share the secret (a key
list, newest first: shared/signing.py).

The token carries when it was signed: a link expires after TTL_S (a receipt or a reminder may
sit in a mailbox for weeks, but not forever).
"""

from urllib.parse import quote

from shared import signing

# Local default only, so a fresh checkout works: deployments set BILLSTREAM_PAYMENTS_PAY_LINK_SECRET
# and BILLSTREAM_WEBHOOKS_PAY_LINK_SECRET to one shared random value.
DEV_SECRET = "billstream-local-pay-links"
PATH = "/pay/invoice/{invoiceId}?sig={signature}"
PURPOSE = "pay-link"
TTL_S = 90 * 24 * 3600


def signature(secret: str, invoice_id: str) -> str:
    return signing.sign_timed(secret, PURPOSE, invoice_id)


def problem(secret: str, invoice_id: str, sig: str, *, max_age_s: int = TTL_S) -> str | None:
    """None if the link is good; otherwise "expired" or "invalid"."""
    return signing.check_timed(secret, PURPOSE, invoice_id, sig, max_age_s)


def valid(secret: str, invoice_id: str, sig: str) -> bool:
    return problem(secret, invoice_id, sig) is None


def path(secret: str, invoice_id: str) -> str:
    return PATH.format(invoiceId=quote(invoice_id, safe=""), signature=signature(secret, invoice_id))
