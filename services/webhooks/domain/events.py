"""The webhooks service's own event contract (topic `billing.webhooks`, key = endpoint id)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from shared.registry import EventRegistry

STREAM_TYPE = "webhook_endpoint"


class Contract(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class WebhookEndpointView(Contract):
    """The endpoint resource as the API shows it (never its secret)."""

    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    livemode: bool = True  # events from before the modes: live
    url: str
    enabled_events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: str | None
    failing_since: str | None
    previous_secret_expires_at: str | None
    created_at: str | None
    updated_at: str | None


class WebhookEndpointDisabled(Contract):
    """An endpoint was disabled: it answered 410 Gone, or every attempt failed for days."""

    endpoint_id: str
    reason: Literal["gone", "failing"]
    detail: str
    endpoint: WebhookEndpointView


registry = EventRegistry()
registry.register("webhook_endpoint.disabled", WebhookEndpointDisabled, stream=STREAM_TYPE)
