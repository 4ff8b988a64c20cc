"""Request bodies of the dunning API (camelCase on the wire)."""

from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


class Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CreateTestClockIn(Body):
    name: str | None = Field(default=None, max_length=200)
    #: where the clock starts; now if left out
    frozen_time: AwareDatetime | None = None


class AdvanceTestClockIn(Body):
    """Either a new `frozenTime`, or an amount to move forward by (`days`, `hours`, `minutes`)."""

    frozen_time: AwareDatetime | None = None
    days: int = Field(default=0, ge=0, le=3650)
    hours: int = Field(default=0, ge=0, le=100_000)
    minutes: int = Field(default=0, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _one_way(self) -> "AdvanceTestClockIn":
        by = self.days or self.hours or self.minutes
        if (self.frozen_time is None) == (not by):
            raise ValueError("give either frozenTime or days/hours/minutes to advance by")
        return self

    def target(self, current: datetime) -> datetime:
        if self.frozen_time is not None:
            return self.frozen_time
        return current + timedelta(days=self.days, hours=self.hours, minutes=self.minutes)
