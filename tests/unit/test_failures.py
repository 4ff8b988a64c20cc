"""Which failures are retried (transient) and which park the event (deterministic)."""

import asyncio

import asyncpg
import pytest
from pydantic import BaseModel, ValidationError

from shared.eventstore import ConcurrencyError
from shared.failures import backoff, is_transient


def pg_error(cls: type[asyncpg.PostgresError]) -> asyncpg.PostgresError:
    return cls.new({"C": cls.sqlstate, "M": "test", "S": "ERROR"})


@pytest.mark.parametrize(
    "exc",
    [
        pg_error(asyncpg.SerializationError),
        pg_error(asyncpg.DeadlockDetectedError),
        pg_error(asyncpg.LockNotAvailableError),
        pg_error(asyncpg.QueryCanceledError),
        pg_error(asyncpg.AdminShutdownError),
        pg_error(asyncpg.CannotConnectNowError),
        pg_error(asyncpg.TooManyConnectionsError),
        pg_error(asyncpg.ConnectionFailureError),
        pg_error(asyncpg.IdleInTransactionSessionTimeoutError),
        pg_error(asyncpg.ObjectInUseError),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("connection is closed"),
        ConcurrencyError("inv_1", 1, 2),
        ConnectionRefusedError(),
        ConnectionResetError(),
        TimeoutError(),
        asyncio.TimeoutError(),  # noqa: UP041 - the name asyncio code raises; the same class since 3.11
        OSError("net"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient(exc):
    assert is_transient(exc)


def _validation_error() -> ValidationError:
    class M(BaseModel):
        n: int

    try:
        M(n="x")
    except ValidationError as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        pg_error(asyncpg.NumericValueOutOfRangeError),
        pg_error(asyncpg.DataError),
        pg_error(asyncpg.UniqueViolationError),
        pg_error(asyncpg.CheckViolationError),
        pg_error(asyncpg.UndefinedTableError),
        ValueError("refused"),
        KeyError("total"),
        _validation_error(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_deterministic(exc):
    assert not is_transient(exc)


def test_asyncpgs_argument_out_of_int64_range_is_deterministic():
    # What asyncpg raises client-side for a total of 10^19 into a bigint (sqlstate 22000).
    exc = asyncpg.DataError("invalid input for query argument $10: 10000000000000000000 (value out of int64 range)")
    assert not is_transient(exc)


def test_raised_from_a_transient_failure_is_transient():
    try:
        try:
            raise pg_error(asyncpg.DeadlockDetectedError)
        except asyncpg.PostgresError as inner:
            raise RuntimeError("could not record the payment") from inner
    except RuntimeError as outer:
        assert is_transient(outer)  # noqa: PT017 - the chained exception is what is tested


def test_backoff_doubles_and_is_capped():
    assert all(0.05 <= backoff(1) <= 0.1 for _ in range(50))
    assert all(2.5 <= backoff(30, cap=5.0) <= 5.0 for _ in range(50))
