"""Provider accounts per tenant (credentials encrypted at rest) and routing to one of them."""

from datetime import UTC, datetime

import asyncpg

from shared import auth
from shared.errors import Conflict, NotFound, Refused
from shared.idempotency import mark_committed
from shared.ids import new_id
from shared.logs import get_logger
from shared.vault import Vault

from ..providers import factory
from ..providers.base import Provider, ProviderError
from ..settings import DEV_CREDENTIALS_KEY
from . import repository as repo
from .routing import SANDBOX_DEFAULT, Account, NoProvider, choose

log = get_logger(__name__)


class Accounts:
    def __init__(self, vault: Vault, settings) -> None:
        self.vault, self.settings = vault, settings

    async def all(self, conn, tenant_id: str) -> list[Account]:
        return [self.from_row(r) for r in await repo.active_accounts_of(conn, tenant_id)]

    def from_row(self, r) -> Account:
        """`r`: ACCOUNT_COLUMNS at least; a whole row also says whether the account is active."""
        return Account(
            r["account_id"],
            r["provider"],
            tuple(r["currencies"]),
            r["priority"],
            self.vault.decrypt(r["credentials"]),
            active=r.get("active", True) and r.get("deleted_at") is None,
        )

    async def route(self, conn, tenant_id: str, currency: str, provider: str | None = None) -> Account:
        # The sandbox serves test mode only: a live world neither falls back to the installation's
        # sandbox nor uses a sandbox account it had from before the modes existed.
        live = auth.livemode(tenant_id)
        accounts = [a for a in await self.all(conn, tenant_id) if not (live and a.provider == "sandbox")]
        try:
            return choose(
                accounts, currency, provider=provider, sandbox_enabled=self.settings.sandbox_enabled and not live
            )
        except NoProvider as exc:
            raise Conflict("no_provider", f"{exc}; add one with POST /api/payment-providers.") from exc

    async def get(self, conn, tenant_id: str, account_id: str | None) -> Account:
        """The account a payment was charged through, inactive or deleted too: its job, refunds
        and late callbacks still need its credentials."""
        if account_id in (None, SANDBOX_DEFAULT):
            return Account(SANDBOX_DEFAULT, "sandbox")
        row = await repo.account_of(conn, tenant_id, account_id, deleted=True)
        if row is None:
            raise NotFound("payment provider", account_id)
        return self.from_row(row)

    def adapter(self, account: Account) -> Provider:
        return factory.build(account.provider, account.credentials, self.settings)

    async def create(
        self,
        conn: asyncpg.Connection,
        tenant_id: str,
        provider: str,
        currencies: list[str],
        priority: int,
        credentials: dict,
        *,
        active: bool = True,
    ) -> dict:
        if provider not in factory.KNOWN:
            raise Refused("provider_unknown", f"provider must be one of {', '.join(factory.KNOWN)}.", field="provider")
        refuse_sandbox_in_live(tenant_id, provider)
        check_credentials(provider, credentials)
        self._warn_dev_key()
        async with conn.transaction():
            row = await repo.insert_account(
                conn,
                new_id("pacct"),
                tenant_id,
                provider,
                currencies,
                priority,
                self.vault.encrypt(credentials),
                active,
            )
            await mark_committed(conn)  # with the account: a retry of the same Idempotency-Key never adds a second
        return view(row)

    async def update(self, conn, tenant_id: str, account_id: str, changes: dict) -> dict:
        """`changes`: any of currencies, priority, active, credentials (replacing all of them)."""
        row = await self._row(conn, tenant_id, account_id)
        if "credentials" in changes:
            check_credentials(row["provider"], changes["credentials"])
            self._warn_dev_key()
            changes["credentials"] = self.vault.encrypt(changes["credentials"])
        async with conn.transaction():
            row = await repo.update_account(conn, tenant_id, account_id, changes)
            if row is None:  # deleted meanwhile
                raise NotFound("payment provider", account_id)
            await mark_committed(conn)
        return view(row)

    async def delete(self, conn, tenant_id: str, account_id: str) -> dict:
        async with conn.transaction():
            row = await repo.delete_account(conn, tenant_id, account_id)
            if row is None:
                raise NotFound("payment provider", account_id)
            await mark_committed(conn)
        return {**view(row), "deleted": True}

    async def test(self, conn, tenant_id: str, account_id: str) -> dict:
        """Whether the provider takes the account's credentials: one authenticated read."""
        row = await self._row(conn, tenant_id, account_id)
        try:
            await self.adapter(self.from_row(row)).check_credentials()
            error = None
        except ProviderError as exc:
            error = {"code": exc.code, "message": exc.message}
        return {
            "object": "payment_provider_test",
            "livemode": auth.livemode(tenant_id),
            "providerId": account_id,
            "provider": row["provider"],
            "ok": error is None,
            "error": error,
            "checkedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }

    async def view_of(self, conn, tenant_id: str, account_id: str) -> dict:
        return view(await self._row(conn, tenant_id, account_id))

    @staticmethod
    async def _row(conn, tenant_id: str, account_id: str):
        row = await repo.account_of(conn, tenant_id, account_id)
        if row is None:
            raise NotFound("payment provider", account_id)
        return row

    def _warn_dev_key(self) -> None:
        if self.settings.credentials_keys == DEV_CREDENTIALS_KEY:
            log.warning(
                "provider credentials encrypted with the built-in development key; "
                "set BILLSTREAM_PAYMENTS_CREDENTIALS_KEYS outside local use"
            )


def check_credentials(provider: str, credentials: dict) -> None:
    """Each credential the provider's adapter needs is there (REQUIRED in providers/factory.py)."""
    for name in factory.REQUIRED[provider]:
        if not credentials.get(name):
            raise Refused(
                "credentials_invalid", f"credentials.{name} is required for {provider}.", field=f"credentials.{name}"
            )


def refuse_sandbox_in_live(tenant_id: str, provider: str) -> None:
    """The sandbox takes no real money, so it serves test mode only."""
    if provider == "sandbox" and auth.livemode(tenant_id):
        raise Refused(
            "sandbox_test_mode_only",
            "The sandbox provider serves test mode only: use a test key "
            "(sk_test_...), or a real provider in live mode.",
            field="provider",
        )


def view(row) -> dict:
    """Never shows credentials, only that they are set."""
    return {
        "id": row["account_id"],
        "object": "payment_provider",
        "livemode": auth.livemode(row["tenant_id"]),
        "provider": row["provider"],
        "currencies": list(row["currencies"]),
        "priority": row["priority"],
        "isActive": row["active"],  # NovaBilling's name; an inactive account takes no new payments
        "credentials": "encrypted",
        "createdAt": row["created_at"].isoformat(),
        "updatedAt": row["updated_at"].isoformat() if row["updated_at"] else None,
    }
