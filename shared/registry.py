"""Event-type registry: each type has a current version with a pydantic model for its data, and
upcasters that turn older stored versions into the current one when read.

Services register their own types; an event of an unregistered type loads as plain data.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from shared.envelope import CloudEvent, schema_uri

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventVersion(Exception):
    """A stored event is newer than this code knows, or no upcaster path exists."""


@dataclass
class _EventType:
    model: type[BaseModel]
    version: int
    stream: str  # the stream type whose topic carries it
    upcasters: dict[int, Upcaster] = field(default_factory=dict)  # from version N to N+1


class EventRegistry:
    def __init__(self) -> None:
        self._types: dict[str, _EventType] = {}

    def register(self, event_type: str, model: type[BaseModel], *, version: int = 1, stream: str | None = None) -> None:
        """`stream` defaults to the type's first part (`invoice` for `invoice.paid`)."""
        self._types[event_type] = _EventType(model=model, version=version, stream=stream or event_type.split(".")[0])

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: register the function that turns `from_version` data into the next version."""

        def register(fn: Upcaster) -> Upcaster:
            self._types[event_type].upcasters[from_version] = fn
            return fn

        return register

    def version_of(self, event_type: str) -> int:
        return self._types[event_type].version

    def types(self) -> dict[str, tuple[type[BaseModel], int, str]]:
        """Every registered type: (data model, current version, stream type)."""
        return {name: (t.model, t.version, t.stream) for name, t in self._types.items()}

    def upcast(self, event: CloudEvent) -> CloudEvent:
        """The event with its data at the current schema version (unchanged if already current)."""
        spec = self._types.get(event.type)
        if spec is None:
            return event
        version, data = event.schema_version, dict(event.data)
        if version > spec.version:
            raise UnknownEventVersion(f"{event.type} v{version} is newer than v{spec.version}")
        while version < spec.version:
            step = spec.upcasters.get(version)
            if step is None:
                raise UnknownEventVersion(f"no upcaster for {event.type} v{version}")
            data, version = step(data), version + 1
        if version == event.schema_version:
            return event
        return event.model_copy(update={"data": data, "dataschema": schema_uri(event.type, version)})

    def load(self, event: CloudEvent) -> BaseModel | dict[str, Any]:
        """The event's data, upcast and validated into its registered model."""
        event = self.upcast(event)
        spec = self._types.get(event.type)
        return spec.model.model_validate(event.data) if spec else event.data

    def new_event(self, event_type: str, data: BaseModel, **kwargs: Any) -> CloudEvent:
        """Build an envelope for registered data at its current version."""
        spec = self._types[event_type]
        if not isinstance(data, spec.model):
            raise TypeError(f"{event_type} expects {spec.model.__name__}")
        return CloudEvent.new(
            type=event_type, data=data.model_dump(mode="json", by_alias=True), version=spec.version, **kwargs
        )
