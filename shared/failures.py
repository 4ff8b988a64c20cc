"""The two kinds of failure (DESIGN.md, "Inside a service", rule 7), decided in one place.

Transient: the same work would succeed later (the database restarted, a deadlock, a version
conflict, a timeout). Retried without limit, never dead-lettered.
Deterministic: everything else (a value that does not fit, a schema-invalid event, a refusal
that cannot change, a bug). Retrying cannot help: the one event is parked in dead_letters.
"""

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

# SQLSTATE classes whose errors pass: connection exception, transaction rollback (serialization
# failure, deadlock), insufficient resources (too many connections), operator intervention
# (admin or crash shutdown, cannot connect now, query canceled), system error (I/O).
TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
# And single codes of other classes: lock not available (lock_timeout), object in use,
# idle-in-transaction timeout.
TRANSIENT_CODES = frozenset({"55P03", "55006", "25P03"})


def is_transient(exc: BaseException) -> bool:
    """True if retrying the same work can succeed. An exception raised `from` a transient one
    (ConcurrencyError from a unique violation is itself transient) counts as transient. An
    exception class may say so itself with `transient = True` (the event store's ConcurrencyError
    does), so this module depends on no other part of shared/."""
    cause: BaseException | None = exc
    while cause is not None:
        if _transient(cause):
            return True
        cause = cause.__cause__
    return False


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.InvalidCachedStatementError):  # a migration changed a table
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, asyncpg.PostgresError) and sqlstate:
        # DataError (22000) is also what asyncpg raises for an argument it cannot encode
        # ("value out of int64 range"): deterministic, like the rest of class 22.
        return sqlstate[:2] in TRANSIENT_CLASSES or sqlstate in TRANSIENT_CODES
    # asyncpg's own client-side errors: a closed or released connection, a stale statement
    # cache after a migration. OSError covers refused/reset connections and every timeout
    # (TimeoutError is an OSError).
    return getattr(exc, "transient", False) is True or isinstance(
        exc, asyncpg.InterfaceError | asyncpg.InternalClientError | OSError
    )


def backoff(attempt: int, *, first: float = 0.1, cap: float = 5.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): doubling, capped, jittered so
    replicas that failed together do not retry together."""
    doubled: float = first * 2 ** (attempt - 1)  # int ** int is typed Any: a negative power is a float
    return min(cap, doubled) * random.uniform(0.5, 1.0)


@dataclass
class Retrying:
    """What a consumer or projection is retrying right now, for /ready and the logs."""

    kind: str  # consumer | projection
    name: str
    error: str
    event_id: str | None = None
    attempts: int = 0
    since: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "eventId": self.event_id,
            "attempts": self.attempts,
            "error": self.error[:300],
            "since": self.since.isoformat(),
        }
