"""Automatic collection: charge the customer's saved method without them present (an invoice
finalized with autoCollection, or a dunning retry). Runs in the consumer's inbox transaction, so
the payment, its charge job and the consumed event commit together. The consumers pass in the
service's Payments; this module knows nothing of how the service is wired."""

import asyncpg

from shared.errors import Refused
from shared.logs import get_logger

from ..domain.collection import COLLECTABLE
from . import repository as repo
from .handlers import Method, Payments, now

log = get_logger(__name__)


async def collect_automatically(
    payments: Payments, conn: asyncpg.Connection, tenant_id: str, invoice_id: str, *, attempt: int
) -> None:
    inv = await repo.find_payable_invoice(conn, tenant_id, invoice_id, lock=True)
    if inv is None:
        log.warning("automatic collection for an unknown invoice skipped", invoice_id=invoice_id)
        return
    balance = await payments.balance(conn, inv)
    if inv["status"] not in COLLECTABLE or balance.remaining <= 0:
        log.info(
            "automatic collection not needed", invoice_id=invoice_id, status=inv["status"], remaining=balance.remaining
        )
        return
    at = now()
    method = await repo.saved_method(conn, tenant_id, inv["customer_id"])
    if method is None:
        await payments.fail_unchargeable(
            conn,
            tenant_id,
            inv,
            "payment_method_missing",
            "The customer has no saved payment method.",
            attempt=attempt,
            at=at,
        )
        return
    try:
        account = await payments.accounts.route(conn, tenant_id, inv["currency"], provider=method["provider"])
    except Refused as exc:
        await payments.fail_unchargeable(conn, tenant_id, inv, exc.code, exc.message, attempt=attempt, at=at)
        return
    try:
        await payments.start(
            conn,
            tenant_id,
            invoice_id,
            method=Method(method["type"], method_id=method["method_id"]),
            account=account,
            automatic=True,
            attempt=attempt,
            at=at,
        )
    except Refused as exc:  # nothing to collect after all: never fail (and dead-letter) the invoice event
        log.info("automatic collection skipped", invoice_id=invoice_id, code=exc.code)
