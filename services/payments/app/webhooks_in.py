"""Provider callbacks in.

Every charge gives the provider a callback URL naming its account,
`/webhooks/{provider}/{accountId}` (the installation's sandbox: `/webhooks/sandbox/default`), so a
callback is checked against that one account's secret. The bare `/webhooks/{provider}` serves
installations with exactly one account of that provider. A verified callback changes only a
payment whose charge was made through the very account that verified it; anything else is logged
and answered 2xx `ignored`, so the provider stops retrying. Duplicates are dropped by provider,
account and the provider's event id."""

from dataclasses import replace

from shared import auth
from shared.aggregate import retry_on_conflict
from shared.errors import Conflict, NotFound, Refused
from shared.logs import get_logger

from ..providers.base import CallbackEvent, ProviderError, SignatureInvalid
from ..providers.factory import KNOWN
from . import repository as repo
from .routing import SANDBOX_DEFAULT, Account

log = get_logger(__name__)


DEFAULT_SEGMENT = "default"  # the installation sandbox's account in callback paths


def callback_url(own_url: str, account: Account) -> str:
    """Where the provider sends this account's callbacks."""
    segment = DEFAULT_SEGMENT if account.account_id == SANDBOX_DEFAULT else account.account_id
    return f"{own_url}/webhooks/{account.provider}/{segment}"


async def _account(payments, provider: str, segment: str | None) -> Account:
    """The one account whose secret checks this callback: the one the path names, or on the bare
    path the only active account of the provider (the installation's sandbox counts as one)."""
    sandbox = provider == "sandbox" and payments.settings.sandbox_enabled
    if segment == DEFAULT_SEGMENT:
        if not sandbox:
            raise SignatureInvalid(f"no default {provider} account")
        return Account(SANDBOX_DEFAULT, "sandbox")
    if segment is not None:
        row = await repo.callback_account(payments.pool, segment, provider)
        if row is None:
            raise SignatureInvalid(f"no {provider} account {segment}")
        return payments.accounts.from_row(row)
    rows = await repo.two_active_accounts(payments.pool, provider)
    if len(rows) + sandbox > 1:
        log.warning("provider callback on the bare path with several accounts", provider=provider)
        raise Refused(
            "callback_account_required",
            f"More than one {provider} account is configured: send callbacks to "
            f"/webhooks/{provider}/{{accountId}} (the URL each charge gives the provider).",
        )
    if sandbox:
        return Account(SANDBOX_DEFAULT, "sandbox")
    if not rows:
        raise SignatureInvalid(f"no active {provider} account")
    return payments.accounts.from_row(rows[0])


async def _charged_through(conn, event: CallbackEvent, account: Account) -> bool:
    """Whether the payment's charge was made through `account` (none recorded: the installation's
    sandbox). Never a live payment through a sandbox, which serves test mode only, not even one
    charged through it before the modes existed. A confirmed event must name the payment's own
    charge too (when it is known) and no other payment's, or the answer confirmed could be
    another payment's."""
    job = await repo.charged_through(conn, event.payment_id, SANDBOX_DEFAULT)
    return (
        job is not None
        and job["account_id"] == account.account_id
        and not (account.provider == "sandbox" and auth.livemode(job["tenant_id"]))
        and not (event.confirm and job["provider_reference"] not in (None, "", event.provider_reference))
        and not (event.confirm and await repo.reference_taken(conn, event.provider_reference, event.payment_id))
    )


async def _confirmed(adapter, event: CallbackEvent) -> CallbackEvent:
    """The event with the status the provider gives when asked (None while still undecided)."""
    try:
        result = await adapter.get_status(event.provider_reference)
    except ProviderError as exc:
        raise Conflict("provider_unavailable", f"The provider could not confirm the callback: {exc.message}") from exc
    settled = result.status in ("succeeded", "failed")
    return replace(
        event,
        status=result.status if settled else None,
        failure_code=result.failure_code,
        failure_reason=result.failure_reason,
        charged=result.charged,
    )


async def receive(
    payments, provider: str, headers: dict[str, str], body: bytes, query: dict[str, str], segment: str | None = None
) -> dict:
    """`segment`: the account named in the path (None on the bare path); `query`: the URL's parameters."""
    if provider not in KNOWN:
        raise NotFound("provider", provider, code="provider_unknown", field=None)
    try:
        account = await _account(payments, provider, segment)
        adapter = payments.accounts.adapter(account)
        event = adapter.verify_callback(headers, body, query)
    except SignatureInvalid as exc:
        log.warning("provider callback refused", provider=provider, account_id=segment, reason=str(exc), size=len(body))
        raise Refused("signature_invalid", "The callback signature could not be verified.") from exc
    if event.confirm and event.status and event.payment_id:
        event = await _confirmed(adapter, event)
        if event.status is None:  # not decided yet: not recorded, so the next callback still counts
            return {"received": True, "ignored": True}

    async def apply(conn) -> dict:
        fresh = await repo.record_provider_event(conn, provider, account.account_id, event.event_id, event.payment_id)
        if not fresh:
            log.info(
                "duplicate provider callback ignored",
                provider=provider,
                account_id=account.account_id,
                provider_event_id=event.event_id,
            )
            return {"received": True, "duplicate": True}
        if not event.payment_id or not event.status:
            return {"received": True, "ignored": True}
        if not await _charged_through(conn, event, account):
            log.warning(
                "provider callback for a payment not charged through this account ignored",
                provider=provider,
                account_id=account.account_id,
                payment_id=event.payment_id,
                provider_event_id=event.event_id,
            )
            return {"received": True, "ignored": True}
        if event.confirm and event.provider_reference:
            # A push whose answer was lost learns its reference here, so the job can look it up.
            await repo.set_provider_reference(conn, event.payment_id, event.provider_reference)
        state = await payments.record(
            conn,
            event.payment_id,
            event.status,
            reference=event.provider_reference,
            code=event.failure_code,
            reason=event.failure_reason,
            charged=event.charged,
        )
        log.info(
            "provider callback applied",
            provider=provider,
            account_id=account.account_id,
            provider_event_id=event.event_id,
            payment_id=event.payment_id,
            status=state.status,
        )
        return {"received": True}

    # The charge job may append at the same moment: decide again (the event's row goes with it).
    return await retry_on_conflict(
        payments.pool,
        apply,
        attempts=5,
        gave_up=lambda: Conflict("conflict", "The payment kept changing; the provider will retry."),
    )
