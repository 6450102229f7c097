import json
import uuid

import pytest

from contracts.envelope import Envelope
from contracts.events import ALL_EVENTS, EVENT_SCHEMAS, OrderLine, OrderPlaced
from contracts.topology import (
    PUBLICATIONS,
    SUBSCRIPTIONS,
    dead_letter_queue_name,
    exchange_name,
    jittered_delays,
    queue_name,
    retry_tier_name,
)
from infra.messaging.codec import MAX_BODY_BYTES, amqp_properties, decode, encode
from infra.messaging.errors import InvalidMessage

pytestmark = pytest.mark.unit

PLACED = OrderPlaced(
    order_id="o-1",
    customer_id="c-1",
    lines=[OrderLine(sku="SKU-1", quantity=1)],
    payment_method="tok_ok",
)


def body(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()


def test_envelope_round_trips_through_the_codec() -> None:
    envelope = Envelope.wrap(PLACED, producer="order", causation_id="cause-1")
    decoded, event = decode(body(envelope))
    assert decoded == envelope
    assert event == PLACED
    assert decoded.correlation_id == "o-1"
    assert decoded.causation_id == "cause-1"


def test_the_publish_path_writes_the_properties_of_the_encoded_message() -> None:
    """Broker.publish builds AMQP properties directly; they must be the ones `encode` gives
    (every field, the headers included), so both paths put the same frames on the wire."""
    envelope = Envelope.wrap(PLACED, producer="order", causation_id="cause-1")
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    expected, direct = encode(envelope, headers).properties, amqp_properties(envelope, headers)
    fields = [name for name in type(direct).__slots__ if not name.startswith("_")]
    assert len(fields) == 14
    assert {f: getattr(direct, f) for f in fields} == {f: getattr(expected, f) for f in fields}
    assert direct.headers == {"x-schema-version": 1, **headers}
    assert direct.delivery_mode == 2  # persistent


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"{}", "invalid envelope"),
        (b"x" * (MAX_BODY_BYTES + 1), "exceeds"),
    ],
)
def test_undecodable_bodies_are_invalid_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        decode(raw)


def test_unknown_type_or_version_is_invalid() -> None:
    envelope = Envelope.wrap(PLACED, producer="order")
    unknown = envelope.model_copy(update={"event_type": "OrderTeleported"})
    future = envelope.model_copy(update={"schema_version": 99})
    with pytest.raises(InvalidMessage, match="unknown event type"):
        decode(body(unknown))
    with pytest.raises(InvalidMessage, match="v99"):
        decode(body(future))


def test_payload_is_validated_against_its_schema() -> None:
    raw = json.loads(body(Envelope.wrap(PLACED, producer="order")))
    raw["payload"]["lines"] = [{"sku": "SKU-1", "quantity": 0}]
    with pytest.raises(InvalidMessage, match="invalid OrderPlaced payload"):
        decode(json.dumps(raw).encode())


def test_payload_must_belong_to_the_correlated_order() -> None:
    raw = json.loads(body(Envelope.wrap(PLACED, producer="order")))
    raw["correlation_id"] = "another-order"
    raw["event_id"] = str(uuid.uuid4())
    with pytest.raises(InvalidMessage, match="correlation_id"):
        decode(json.dumps(raw).encode())


def test_topology_names() -> None:
    assert exchange_name("OrderPlaced") == "events.order-placed"
    assert queue_name("inventory", "OrderPlaced") == "inventory.order-placed"
    assert dead_letter_queue_name("inventory.order-placed") == "inventory.order-placed.dlq"
    assert retry_tier_name("payment", 1000) == "payment.retry.1000ms"


def test_retry_delays_are_jittered_in_steps_down_to_one_minus_jitter() -> None:
    assert jittered_delays(1_000, 0.3) == (1_000, 850, 700)
    assert jittered_delays(120_000, 0.2) == (120_000, 108_000, 96_000)
    assert jittered_delays(1_000, 0) == (1_000,)
    assert jittered_delays(1, 0.3) == (1,)  # rounding may merge variants; never below 1 ms
    with pytest.raises(ValueError):
        jittered_delays(1_000, 1.0)


def test_every_event_has_a_schema_a_producer_and_a_consumer() -> None:
    assert set(EVENT_SCHEMAS.values()) == set(ALL_EVENTS)
    published = {e for events in PUBLICATIONS.values() for e in events}
    consumed = {e for events in SUBSCRIPTIONS.values() for e in events}
    assert published == set(ALL_EVENTS)
    assert consumed == set(ALL_EVENTS)
