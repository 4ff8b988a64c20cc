"""An AsyncAPI 3.0 document of a service's events, generated from its event registry: the
topics it publishes (each message a CloudEvents envelope around the registered data model) and
the topics it consumes."""

from typing import Any

from pydantic.json_schema import models_json_schema

from shared.envelope import CONTENT_TYPE, CloudEvent, schema_uri
from shared.registry import EventRegistry


def document(
    service: str,
    registry: EventRegistry,
    topics: dict[str, str],
    consumes: list[str],
    *,
    kafka: str = "127.0.0.1:59092",
) -> dict[str, Any]:
    types = registry.types()
    _, defs = models_json_schema(
        [(model, "serialization") for model, _, _ in types.values()],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    envelope = CloudEvent.model_json_schema(by_alias=True)
    envelope["properties"].pop("data")
    schemas["CloudEvent"] = envelope

    messages: dict[str, Any] = {}
    by_topic: dict[str, list[str]] = {}
    for event_type, (model, version, stream) in sorted(types.items()):
        topic = topics.get(stream)
        if topic is None:
            continue
        messages[event_type] = {
            "name": event_type,
            "title": event_type,
            "contentType": CONTENT_TYPE.split(";")[0],
            "summary": (model.__doc__ or "").strip().split("\n")[0] or event_type,
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEvent"},
                    {
                        "type": "object",
                        "required": ["data"],
                        "properties": {
                            "type": {"const": event_type},
                            "dataschema": {"const": schema_uri(event_type, version)},
                            "data": {"$ref": f"#/components/schemas/{model.__name__}"},
                        },
                    },
                ]
            },
        }
        by_topic.setdefault(topic, []).append(event_type)

    channels, operations = {}, {}
    for topic in sorted(set(by_topic) | set(consumes)):
        channels[topic] = {
            "address": topic,
            "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in by_topic.get(topic, [])},
        }
    for topic, event_types in sorted(by_topic.items()):
        operations[f"publish.{topic}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic}"},
            "summary": f"{service} publishes these, keyed by aggregate id",
            "messages": [{"$ref": f"#/channels/{topic}/messages/{t}"} for t in event_types],
        }
    for topic in sorted(consumes):
        operations[f"consume.{topic}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{topic}"},
            "summary": f"{service} consumes this topic as consumer group {service}.<name>",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"Billstream {service} events",
            "version": "1.0.0",
            "description": "Generated from the service's event registry; see docs/events.md.",
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {"local": {"host": kafka, "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
