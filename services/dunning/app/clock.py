"""Time is an input. The domain never reads the wall clock: the app passes `now` in, taken from
a Clock, or from the tenant's test clock when a test world has one."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand; listeners (the timer engine) are told when it moves."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> datetime:
        return self._now

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def set(self, moment: datetime) -> None:
        if moment < self._now:
            raise ValueError("time does not go backwards")
        self._now = moment
        for listener in self._listeners:
            listener()

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, as the events write times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
