from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

from shared.envelope import CloudEvent, schema_uri
from shared.logs import bind_correlation
from shared.registry import EventRegistry, UnknownEventVersion


class PaidV2(BaseModel):
    amount: int
    currency: str


class Other(BaseModel):
    x: int


def make_registry() -> EventRegistry:
    reg = EventRegistry()
    reg.register("thing.paid", PaidV2, version=2)

    @reg.upcaster("thing.paid", from_version=1)
    def _v1_to_v2(data: dict) -> dict:  # v1 had a single "price" string like "12.50 USD"
        amount, currency = data["price"].split()
        return {"amount": int(amount.replace(".", "")), "currency": currency}

    return reg


def event(data: dict, version: int) -> CloudEvent:
    return CloudEvent.new(
        type="thing.paid", source="/test", subject="thing_1", tenant_id="ten_1", data=data, version=version
    )


def test_envelope_is_cloudevents_json_with_extensions():
    bind_correlation("corr-1", causation_id="cause-1")
    e = event({"amount": 5, "currency": "USD"}, 2)
    body = CloudEvent.model_validate_json(e.to_json())
    assert body == e
    assert body.specversion == "1.0" and body.dataschema == "urn:billstream:thing.paid:v2"
    assert (body.correlationid, body.causationid, body.tenantid) == ("corr-1", "cause-1", "ten_1")
    assert body.schema_version == 2


def test_schema_version_has_every_digit():
    assert event({}, 12).dataschema.endswith(":v12")
    assert event({}, 12).schema_version == 12


@pytest.mark.parametrize("attribute", ["tenantid", "id", "type", "source", "subject"])
def test_envelope_refuses_empty_required_attributes(attribute):
    with pytest.raises(ValidationError):
        CloudEvent.model_validate({**event({}, 1).model_dump(), attribute: ""})


def test_envelope_rejects_missing_required_attributes():
    with pytest.raises(ValidationError):
        CloudEvent.model_validate_json(b'{"specversion":"1.0","id":"x","type":"t"}')
    with pytest.raises(ValidationError):
        CloudEvent.model_validate({**event({}, 1).model_dump(), "specversion": "0.3"})


def test_old_version_is_upcast_on_read():
    reg = make_registry()
    loaded = reg.load(event({"price": "12.50 USD"}, 1))
    assert loaded == PaidV2(amount=1250, currency="USD")
    assert reg.upcast(event({"price": "1.00 UGX"}, 1)).dataschema == schema_uri("thing.paid", 2)


def test_current_version_loads_unchanged_and_newer_version_is_refused():
    reg = make_registry()
    current = event({"amount": 1, "currency": "KWD"}, 2)
    assert reg.upcast(current) is current
    with pytest.raises(UnknownEventVersion):
        reg.load(event({"amount": 1, "currency": "KWD"}, 3))


def test_unregistered_type_loads_as_plain_data():
    e = CloudEvent.new(type="other.happened", source="/t", subject="s", tenant_id="t", data={"a": 1})
    assert make_registry().load(e) == {"a": 1}


def test_new_event_requires_the_registered_model():
    reg = make_registry()
    e = reg.new_event("thing.paid", PaidV2(amount=3, currency="NGN"), source="/t", subject="s", tenant_id="t")
    assert e.data == {"amount": 3, "currency": "NGN"} and e.schema_version == 2
    with pytest.raises(TypeError):
        reg.new_event("thing.paid", Other(x=1), source="/t", subject="s", tenant_id="t")


def test_event_time_defaults_to_now_in_utc():
    e = event({}, 1)
    assert e.time.tzinfo is not None and abs((datetime.now(UTC) - e.time).total_seconds()) < 5
