"""Which endpoints want which events, and what they receive. Pure functions."""

import fnmatch
import json

from shared.envelope import CloudEvent


def wants(enabled_events: list[str], event_type: str) -> bool:
    """'*' matches everything, 'invoice.*' a family, anything else exactly."""
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in enabled_events)


def payload_for(event: CloudEvent) -> str:
    """The body subscribers receive: {id, type, createdAt, data}."""
    created_at = event.model_dump(mode="json", include={"time"})["time"]  # same text as the envelope
    return json.dumps(
        {"id": event.id, "type": event.type, "createdAt": created_at, "data": event.data},
        separators=(",", ":"),
    )
