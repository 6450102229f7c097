"""Upcasting old event versions, on a throwaway event that exists only in this file.

`ParcelShipped` went through three versions:
  v1 {parcel_id, weight_kg: float}
  v2 {parcel_id, weight_grams: int}                   (retyped and renamed: breaking)
  v3 {parcel_id, weight_grams, carrier: str}          (new required field: breaking)
"""

from __future__ import annotations

import json
import uuid
from typing import Any, ClassVar

import pytest

from contracts import versions
from contracts.envelope import Envelope
from contracts.events import EVENT_SCHEMAS, Event
from contracts.versions import (
    UPCASTERS,
    Payload,
    UnknownSchemaVersion,
    Upcaster,
    UpcastFailed,
    current_version,
    upcast,
    upcaster,
)
from infra.messaging.codec import decode
from infra.messaging.errors import InvalidMessage

pytestmark = pytest.mark.unit

TYPE = "TestParcelShipped"


class ParcelShipped(Event):
    event_type: ClassVar[str] = TYPE
    schema_version: ClassVar[int] = 3
    parcel_id: str
    weight_grams: int
    carrier: str

    @property
    def aggregate_id(self) -> str:
        return self.parcel_id


def v1_to_v2(payload: Payload) -> Payload:
    payload["weight_grams"] = round(payload.pop("weight_kg") * 1000)
    return payload


def v2_to_v3(payload: Payload) -> Payload:
    payload["carrier"] = "post"  # the only carrier before v3
    return payload


SCHEMAS: dict[tuple[str, int], type[Event]] = {(TYPE, 3): ParcelShipped}
CHAIN: dict[tuple[str, int], Upcaster] = {(TYPE, 1): v1_to_v2, (TYPE, 2): v2_to_v3}
V1 = {"parcel_id": "p-1", "weight_kg": 1.25}


def run(version: int, payload: Payload, chain: dict[tuple[str, int], Upcaster] = CHAIN) -> Any:
    return upcast(TYPE, version, payload, schemas=SCHEMAS, upcasters=chain)


def test_an_old_payload_is_upcast_step_by_step_to_the_current_version() -> None:
    assert run(1, V1) == (3, {"parcel_id": "p-1", "weight_grams": 1250, "carrier": "post"})
    assert run(2, {"parcel_id": "p-1", "weight_grams": 7}) == (
        3,
        {"parcel_id": "p-1", "weight_grams": 7, "carrier": "post"},
    )


def test_the_current_version_passes_through_unchanged() -> None:
    current = {"parcel_id": "p-1", "weight_grams": 7, "carrier": "dhl"}
    assert run(3, current) == (3, current)


def test_the_callers_payload_is_never_modified() -> None:
    original = json.loads(json.dumps(V1))
    run(1, original)
    assert original == V1


@pytest.mark.parametrize(
    ("version", "chain", "reason"),
    [
        (4, CHAIN, r"v4 \(current is v3\)"),
        (1, {(TYPE, 2): v2_to_v3}, r"no upcaster from v1 to v2"),
        (1, {(TYPE, 1): v1_to_v2}, r"no upcaster from v2 to v3"),
    ],
)
def test_a_version_without_a_path_is_unknown(
    version: int, chain: dict[tuple[str, int], Upcaster], reason: str
) -> None:
    with pytest.raises(UnknownSchemaVersion, match=reason):
        run(version, V1, chain)


def test_an_unknown_type_is_unknown() -> None:
    with pytest.raises(UnknownSchemaVersion, match="unknown event type"):
        upcast("Nope", 1, {}, schemas=SCHEMAS, upcasters=CHAIN)
    assert current_version("Nope", SCHEMAS) is None
    assert current_version(TYPE, SCHEMAS) == 3


def test_a_malformed_old_payload_fails_to_upcast() -> None:
    with pytest.raises(UpcastFailed, match=r"cannot upcast TestParcelShipped v1 to v2: KeyError"):
        run(1, {"parcel_id": "p-1"})


def test_the_decorator_registers_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "UPCASTERS", {})
    upcaster(TYPE, from_version=1)(v1_to_v2)
    registered = versions.UPCASTERS
    assert registered == {(TYPE, 1): v1_to_v2}
    with pytest.raises(ValueError, match="already registered"):
        upcaster(TYPE, from_version=1)(v2_to_v3)


# Through the codec, with the throwaway event registered for the test's duration only.


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EVENT_SCHEMAS, (TYPE, 3), ParcelShipped)
    for key, function in CHAIN.items():
        monkeypatch.setitem(UPCASTERS, key, function)


def body(version: int, payload: Payload) -> bytes:
    envelope = {
        "event_id": str(uuid.uuid4()),
        "event_type": TYPE,
        "schema_version": version,
        "occurred_at": "2024-05-01T12:00:00+00:00",
        "correlation_id": "p-1",
        "producer": "shipping",
        "payload": payload,
    }
    return json.dumps(envelope).encode()


@pytest.mark.usefixtures("registered")
def test_the_codec_decodes_an_old_version_as_the_current_one() -> None:
    envelope, event = decode(body(1, V1))
    assert event == ParcelShipped(parcel_id="p-1", weight_grams=1250, carrier="post")
    # The envelope handlers see agrees with the event: current version, upcast payload.
    assert envelope.schema_version == 3
    assert envelope.payload == event.model_dump(mode="json")


@pytest.mark.usefixtures("registered")
def test_the_codec_decodes_the_current_version_untouched() -> None:
    event = ParcelShipped(parcel_id="p-1", weight_grams=5, carrier="dhl")
    envelope = Envelope.wrap(event, producer="shipping")
    assert decode(envelope.model_dump_json().encode()) == (envelope, event)


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize(
    ("version", "payload", "reason"),
    [
        (4, V1, r"unknown event type or version: TestParcelShipped v4"),
        (0, V1, r"invalid envelope"),
        (1, {"parcel_id": "p-1"}, r"cannot upcast TestParcelShipped v1 to v2"),
        # Upcast, then validated as v3: a bad v2 field is still caught, and the reason says so.
        (
            2,
            {"parcel_id": "p-1", "weight_grams": "heavy"},
            r"invalid TestParcelShipped payload \(upcast from v2 to v3\): weight_grams",
        ),
    ],
)
def test_the_codec_rejects_what_cannot_become_a_valid_current_event(
    version: int, payload: Payload, reason: str
) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        decode(body(version, payload))


def test_without_an_upcaster_an_old_version_stays_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EVENT_SCHEMAS, (TYPE, 3), ParcelShipped)
    with pytest.raises(InvalidMessage, match=r"TestParcelShipped v1 \(no upcaster from v1 to v2\)"):
        decode(body(1, V1))
