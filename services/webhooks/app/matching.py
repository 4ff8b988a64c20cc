"""Which endpoints want which events, and what they receive. Pure functions."""

import fnmatch
import json
import re

from shared import auth
from shared.envelope import CloudEvent

# The public event types (docs/events.md). A filter must match at least one of them, so a typo
# such as "invoice.payed" is refused instead of silently receiving nothing.
PUBLIC_EVENT_TYPES = frozenset(
    {
        "invoice.created",
        "invoice.updated",
        "invoice.finalized",
        "invoice.sent",
        "invoice.payment_received",
        "invoice.paid",
        "invoice.overdue",
        "invoice.payment_failed",
        "invoice.marked_uncollectible",
        "invoice.voided",
        "invoice.written_off",
        "invoice.refunded",
        "invoice.adjusted",
        "invoice.adjustment_voided",
        "invoice.deleted",
        "credit_note.created",
        "credit_note.voided",
        "payment.created",
        "payment.processing",
        "payment.succeeded",
        "payment.failed",
        "payment.refunded",
        "dunning.due_date_passed",
        "dunning.retry_scheduled",
        "dunning.retry_due",
        "dunning.retry_unanswered",
        "dunning.succeeded",
        "dunning.exhausted",
        "dunning.stopped",
        "dunning.reminder_due",
        "plan.created",
        "plan.updated",
        "plan.price_added",
        "plan.price_changed",
        "plan.price_removed",
        "plan.deleted",
        "subscription.created",
        "subscription.trial_ending",
        "subscription.renewed",
        "subscription.changed",
        "subscription.paused",
        "subscription.resumed",
        "subscription.past_due",
        "subscription.recovered",
        "subscription.canceled",
        "subscription.ended",
    }
)
_PATTERN = re.compile(r"^(\*|[a-z][a-z_]*(\.[a-z][a-z_]*)*(\.\*)?)$")


def wants(enabled_events: list[str], event_type: str) -> bool:
    """'*' matches everything, 'invoice.*' a family, anything else exactly."""
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in enabled_events)


def invalid_filter(pattern: str) -> str | None:
    """Why an event-type filter is refused, or None if it is fine."""
    if not _PATTERN.match(pattern):
        return f"'{pattern}' is not an event type or a wildcard such as 'invoice.*' or '*'."
    if not any(fnmatch.fnmatchcase(t, pattern) for t in PUBLIC_EVENT_TYPES):
        return f"'{pattern}' matches no event type."
    return None


def payload_for(event: CloudEvent) -> str:
    """The body subscribers receive: {id, type, livemode, createdAt, data}; livemode as in Stripe's
    events, so a subscriber can tell a test event from a live one."""
    created_at = event.model_dump(mode="json", include={"time"})["time"]  # same text as the envelope
    return json.dumps(
        {
            "id": event.id,
            "type": event.type,
            "livemode": auth.livemode(event.tenantid),
            "createdAt": created_at,
            "data": event.data,
        },
        separators=(",", ":"),
    )
