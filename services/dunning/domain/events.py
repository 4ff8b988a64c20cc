"""Dunning's event contracts (billing.dunning, key = the invoice id), at their current versions.
Every event carries the facts and a `dunning` snapshot of the process as it is after the event."""

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from shared.registry import EventRegistry

from .policy import FinalAction

STREAM_TYPE = "dunning"
Status = Literal["IN_PROGRESS", "EXHAUSTED", "STOPPED", "SUCCESS"]


class Contract(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class DunningSnapshot(Contract):
    """As of the event. `status` is never null in an event; the API shows null for an invoice
    dunning has not acted on yet."""

    invoice_id: str
    status: Status | None
    attempts: int
    next_retry_at: datetime | None
    updated_at: datetime | None  # null only in the API's view of an invoice never in dunning


class DunningEvent(Contract):
    invoice_id: str
    dunning: DunningSnapshot


class DueDatePassed(DunningEvent):
    """The invoice passed its due date (plus grace) unpaid: invoicing records invoice.overdue."""

    due_date: date


class RetryScheduled(DunningEvent):
    """An automatic collection failed; the next attempt is set for `scheduledAt`."""

    attempt: int
    scheduled_at: datetime


class RetryDue(DunningEvent):
    """A retry fell due: payments charges the saved method again."""

    attempt: int


class RetryUnanswered(DunningEvent):
    """No outcome of a retry arrived in time (payments skipped it, or the charge was lost):
    dunning counts the attempt as failed and goes on, so it never waits forever."""

    attempt: int


class Succeeded(DunningEvent):
    """The invoice was paid while in dunning."""


class Exhausted(DunningEvent):
    """The last retry failed: invoicing applies `finalAction`."""

    attempts: int
    final_action: FinalAction


class Stopped(DunningEvent):
    """Dunning was stopped (stop-dunning, or the invoice voided or written off)."""


class ReminderDue(DunningEvent):
    """A reminder is due: webhooks e-mails the customer."""

    kind: Literal["before_due", "after_due"]
    days: int


EVENT_TYPES: dict[type[DunningEvent], str] = {
    DueDatePassed: "dunning.due_date_passed",
    RetryScheduled: "dunning.retry_scheduled",
    RetryDue: "dunning.retry_due",
    RetryUnanswered: "dunning.retry_unanswered",
    Succeeded: "dunning.succeeded",
    Exhausted: "dunning.exhausted",
    Stopped: "dunning.stopped",
    ReminderDue: "dunning.reminder_due",
}

registry = EventRegistry()
for _model, _type in EVENT_TYPES.items():
    registry.register(_type, _model)


def type_of(event: DunningEvent) -> str:
    return EVENT_TYPES[type(event)]
