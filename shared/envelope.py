"""The CloudEvents 1.0 envelope every Billstream event travels in (structured JSON mode).

Extension attributes follow the CloudEvents naming rule (lower-case letters and digits only):
`tenantid`, `correlationid`, `causationid`, and `sequence` (the event's version in its stream).
The data schema version is carried in `dataschema` as `urn:billstream:<type>:v<N>`.
"""

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.logs import current_causation_id, current_correlation_id, new_id

CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
_SCHEMA_RE = re.compile(r"^urn:billstream:(?P<type>[a-z0-9_.]+):v(?P<version>\d+)$")


def schema_uri(event_type: str, version: int) -> str:
    return f"urn:billstream:{event_type}:v{version}"


class CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    source: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    tenantid: str = Field(min_length=1)
    correlationid: str
    causationid: str | None = None
    sequence: str | None = None
    data: dict[str, Any]

    @property
    def schema_version(self) -> int:
        match = _SCHEMA_RE.match(self.dataschema)
        return int(match["version"]) if match else 1

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def new(
        cls,
        *,
        type: str,
        source: str,
        subject: str,
        tenant_id: str,
        data: dict[str, Any],
        version: int = 1,
        time: datetime | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> "CloudEvent":
        """A new event; correlation and causation default to the ones bound for this task."""
        correlation = correlation_id or current_correlation_id() or new_id()
        return cls(
            id=new_id(),
            type=type,
            source=source,
            subject=subject,
            time=time or datetime.now(UTC),
            dataschema=schema_uri(type, version),
            tenantid=tenant_id,
            correlationid=correlation,
            causationid=causation_id or current_causation_id(),
            data=data,
        )
