"""Small helpers to make events in tests."""

from shared.envelope import CloudEvent


def make_event(stream: str, n: int = 0, *, tenant: str = "ten_test", type: str = "thing.happened") -> CloudEvent:
    return CloudEvent.new(type=type, source="/test", subject=stream, tenant_id=tenant, data={"n": n})
