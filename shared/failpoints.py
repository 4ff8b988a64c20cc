"""Crash points for recovery tests: BILLSTREAM_FAILPOINTS=relay.after_publish,... makes the
process exit at once (no cleanup, like kill -9) when it reaches a named point."""

import os

_ACTIVE = frozenset(filter(None, os.environ.get("BILLSTREAM_FAILPOINTS", "").split(",")))


def failpoint(name: str) -> None:
    if name in _ACTIVE:
        os._exit(137)
