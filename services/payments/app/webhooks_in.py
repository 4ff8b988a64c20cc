"""Provider callbacks in at /webhooks/{provider}: signature verified against the provider's
secrets, duplicates dropped by the provider's event id, then applied to the payment."""

from shared.errors import ApiError
from shared.eventstore import ConcurrencyError
from shared.logs import get_logger

from ..providers.base import CallbackEvent, SignatureInvalid
from ..providers.factory import KNOWN
from .routing import SANDBOX_DEFAULT, Account

log = get_logger(__name__)


async def _verify(payments, provider: str, headers: dict[str, str], body: bytes) -> tuple[CallbackEvent, str | None]:
    """The verified event and the tenant whose account signed it (None: the installation's sandbox)."""
    candidates: list[tuple[Account, str | None]] = []
    if provider == "sandbox" and payments.settings.sandbox_enabled:
        candidates.append((Account(SANDBOX_DEFAULT, "sandbox"), None))
    rows = await payments.pool.fetch(
        "SELECT account_id, tenant_id, currencies, priority, credentials FROM provider_accounts WHERE provider = $1 AND active",
        provider)
    for r in rows:
        creds = payments.vault.decrypt(r["credentials"])
        candidates.append((Account(r["account_id"], provider, tuple(r["currencies"]), r["priority"], creds), r["tenant_id"]))
    for account, tenant_id in candidates:
        try:
            return payments.accounts.adapter(account).verify_callback(headers, body), tenant_id
        except SignatureInvalid:
            continue
    raise SignatureInvalid("no configured secret verifies this callback")


async def receive(payments, provider: str, headers: dict[str, str], body: bytes) -> dict:
    if provider not in KNOWN:
        raise ApiError("provider_unknown", f"Unknown provider '{provider}'.", status=404)
    try:
        event, tenant_id = await _verify(payments, provider, headers, body)
    except SignatureInvalid as exc:
        log.warning("provider callback refused", provider=provider, reason=str(exc), size=len(body))
        raise ApiError("signature_invalid", "The callback signature could not be verified.", status=400) from exc
    for _ in range(5):
        try:
            async with payments.pool.acquire() as conn, conn.transaction():
                fresh = await conn.fetchval(
                    """INSERT INTO provider_events (provider, event_id, payment_id) VALUES ($1, $2, $3)
                       ON CONFLICT DO NOTHING RETURNING true""", provider, event.event_id, event.payment_id)
                if not fresh:
                    log.info("duplicate provider callback ignored", provider=provider, provider_event_id=event.event_id)
                    return {"received": True, "duplicate": True}
                if not event.payment_id or not event.status:
                    return {"received": True, "ignored": True}
                exists = await conn.fetchval(
                    "SELECT tenant_id FROM invoice_payments WHERE payment_id = $1", event.payment_id)
                if exists is None or (tenant_id is not None and exists != tenant_id):
                    log.warning("provider callback for an unknown payment", provider=provider,
                                payment_id=event.payment_id)
                    return {"received": True, "ignored": True}
                state = await payments.record(conn, event.payment_id, event.status,
                                              reference=event.provider_reference, code=event.failure_code,
                                              reason=event.failure_reason)
                log.info("provider callback applied", provider=provider, provider_event_id=event.event_id,
                         payment_id=event.payment_id, status=state.status)
                return {"received": True}
        except ConcurrencyError:
            continue  # the charge job appended at the same moment: decide again
    raise ApiError("conflict", "The payment kept changing; the provider will retry.", status=409)
