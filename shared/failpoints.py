"""Crash points for recovery tests. BILLSTREAM_FAILPOINTS is a comma-separated list of names
(`relay.after_publish`, `consumer.after_commit:<consumer>`, `payments.before_charge`,
`payments.after_charge`, `dunning.after_timer_fired`); reaching a listed point makes the
process exit at once with status 137, skipping all cleanup, as kill -9 would."""

import os

_ACTIVE = frozenset(filter(None, os.environ.get("BILLSTREAM_FAILPOINTS", "").split(",")))


def failpoint(name: str) -> None:
    if name in _ACTIVE:
        os._exit(137)
