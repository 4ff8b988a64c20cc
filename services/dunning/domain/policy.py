"""A tenant's dunning policy: how often to retry a failed automatic collection, what to do when
the retries run out, the grace period before an invoice counts as overdue, and reminders."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

FinalAction = Literal["mark_uncollectible", "void", "leave_open"]


class Policy(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")

    #: One entry per retry: days after the previous failed attempt. [1, 3, 5, 7] = four retries.
    retry_intervals_days: list[int] = Field(default=[1, 3, 5, 7], max_length=12)
    final_action: FinalAction = "mark_uncollectible"
    #: Days after the due date before the invoice counts as overdue.
    grace_period_days: int = Field(default=0, ge=0, le=90)
    #: Reminders e-mailed N days before the due date, and N days after it has passed.
    reminders_before_due_days: list[int] = Field(default=[], max_length=10)
    reminders_after_due_days: list[int] = Field(default=[], max_length=10)

    @field_validator("retry_intervals_days")
    @classmethod
    def _intervals(cls, v: list[int]) -> list[int]:
        if any(d < 1 or d > 90 for d in v):
            raise ValueError("each retry interval must be between 1 and 90 days")
        return v

    @field_validator("reminders_before_due_days", "reminders_after_due_days")
    @classmethod
    def _reminders(cls, v: list[int]) -> list[int]:
        if any(d < 1 or d > 365 for d in v):
            raise ValueError("reminder days must be between 1 and 365")
        if len(set(v)) != len(v):
            raise ValueError("reminder days must not repeat")
        return sorted(v)

    @property
    def max_attempts(self) -> int:
        return len(self.retry_intervals_days)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


DEFAULT_POLICY = Policy()
