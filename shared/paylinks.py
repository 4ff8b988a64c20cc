"""Pay links in customer e-mails: /pay/invoice/<invoiceId>?sig=<signature>. The webhooks service
signs them, the payments service checks them and opens a checkout session for the invoice, so a
link works for as long as the invoice is payable without anyone creating a session first, and an
invoice id alone (which is not secret) opens nothing. Both services must share the secret."""

import hashlib
import hmac

# Local default only, so a fresh checkout works: deployments set BILLSTREAM_PAYMENTS_PAY_LINK_SECRET
# and BILLSTREAM_WEBHOOKS_PAY_LINK_SECRET to one shared random value.
DEV_SECRET = "billstream-local-pay-links"
PATH = "/pay/invoice/{invoiceId}?sig={signature}"


def signature(secret: str, invoice_id: str) -> str:
    return hmac.new(secret.encode(), f"pay:{invoice_id}".encode(), hashlib.sha256).hexdigest()[:32]


def valid(secret: str, invoice_id: str, sig: str) -> bool:
    return hmac.compare_digest(signature(secret, invoice_id), sig)


def path(secret: str, invoice_id: str) -> str:
    return PATH.format(invoiceId=invoice_id, signature=signature(secret, invoice_id))
