"""Which provider account takes a payment: the tenant's accounts for the currency (an explicit
currency beats a catch-all, then the lowest priority), else the installation's sandbox when the
caller allows it (test mode only)."""

from dataclasses import dataclass, field

SANDBOX_DEFAULT = "default:sandbox"


@dataclass(frozen=True)
class Account:
    account_id: str
    provider: str
    currencies: tuple[str, ...] = ()  # empty: any currency
    priority: int = 100
    credentials: dict = field(default_factory=dict, compare=False, repr=False)
    active: bool = True  # False once deactivated or deleted: it may finish its payments, not start one


class NoProvider(Exception):
    pass


def choose(
    accounts: list[Account], currency: str, *, provider: str | None = None, sandbox_enabled: bool = True
) -> Account:
    """The account to use for `currency` (and `provider`, when a saved method fixes it)."""
    candidates = [
        a
        for a in accounts
        if (provider is None or a.provider == provider) and (not a.currencies or currency in a.currencies)
    ]
    if candidates:
        return min(candidates, key=lambda a: (0 if a.currencies else 1, a.priority, a.account_id))
    if sandbox_enabled and provider in (None, "sandbox"):
        return Account(SANDBOX_DEFAULT, "sandbox")
    raise NoProvider(f"no {provider or 'payment'} provider is configured for {currency}")
