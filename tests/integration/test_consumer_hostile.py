"""Hostile deliveries against the real RabbitMQ: headers, bodies and event types the consumer
must refuse without ever stalling a queue (issue 11, items 5, 6 and 10)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aio_pika
import pytest
from prometheus_client import REGISTRY

from contracts.envelope import Envelope
from contracts.events import OrderPlaced, PaymentFailed, PaymentSucceeded
from contracts.topology import ORDER
from infra.messaging import codec
from infra.messaging.broker import Broker
from infra.messaging.consumer import Consumer
from infra.settings import AmqpSettings
from tests.integration.events import noting, order_placed
from tests.integration.test_consumer import dead_letters, raw_publish
from tests.integration.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.security]

# Each was read as a count it is not (a string or a float silently became attempt 1, a huge
# number "retries exhausted"). A float infinity or NaN raised OverflowError outside the ack
# policy; RabbitMQ 3.10 closes the connection of a client that publishes one (the broker here
# cannot carry it), so those two are covered by tests/unit/test_message_headers.py.
HOSTILE_ATTEMPTS: list[Any] = [
    "Infinity",
    "NaN",
    10**18,
    -5,
    0,
    "three",
    2.5,
    3.0e38,
    True,
    -1.0,
]
PREFETCH = 32


async def test_hostile_attempt_headers_are_dead_lettered_and_never_stall_the_queue(
    broker: Broker,
) -> None:
    handled: list[str] = []
    handler = noting(handled)
    # As many hostile deliveries as the prefetch window: if any stayed unsettled, the good
    # message behind them would never be delivered.
    settings = AmqpSettings(prefetch=PREFETCH, retry_delays_ms=[60_000])
    consumer = Consumer(broker, broker.service, settings)
    queue = await consumer.subscribe(OrderPlaced, handler)
    for index in range(PREFETCH):
        value = HOSTILE_ATTEMPTS[index % len(HOSTILE_ATTEMPTS)]
        envelope = order_placed()
        message = codec.encode(envelope, headers={"x-attempt": value})
        message.message_id = f"hostile-{index}"
        await raw_publish(broker, message.body, **_properties(message))
    good = order_placed()
    await broker.publish(good)

    await eventually(lambda: good.correlation_id in handled, timeout_s=20)
    letters = {m.message_id: m.headers for m in await dead_letters(broker, queue, PREFETCH)}
    assert set(letters) == {f"hostile-{i}" for i in range(PREFETCH)}
    for headers in letters.values():
        assert headers["x-dead-letter-reason"] == "permanent failure"
        assert headers["x-exception-class"] == "InvalidMessage"
        assert "x-attempt" in headers["x-exception-message"]
    assert handled == [good.correlation_id], "no hostile delivery reached the handler"
    await consumer.stop()


async def test_bodies_that_break_the_decoder_are_permanent_failures(broker: Broker) -> None:
    """Nested too deep (RecursionError) or an integer over Python's digit limit (ValueError):
    both fail the same way on every retry, so they go to the DLQ at once, not to a tier."""
    consumer = Consumer(broker, broker.service, AmqpSettings(retry_delays_ms=[60_000]))

    async def handler(envelope: Envelope, event: OrderPlaced) -> None:
        raise AssertionError("never reached")

    queue = await consumer.subscribe(OrderPlaced, handler)
    await raw_publish(broker, b"[" * 50_000 + b"]" * 50_000, message_id="deep")
    await raw_publish(broker, b'{"event_id": ' + b"9" * 5_000 + b"}", message_id="long-int")

    letters = {m.message_id: m.headers for m in await dead_letters(broker, queue, 2)}
    for headers in letters.values():
        assert headers["x-dead-letter-reason"] == "permanent failure"
        assert headers["x-attempts"] == 1
        assert headers["x-exception-class"] == "InvalidMessage"
    assert "nested too deeply" in letters["deep"]["x-exception-message"]
    await consumer.stop()


async def test_an_event_of_another_type_on_a_queue_is_dead_lettered_never_handled(
    broker: Broker,
) -> None:
    """A PaymentFailed moved to the payment-succeeded queue (a wrong `dlq replay --to`, a
    shovel mistake) once confirmed an order."""
    handled: list[str] = []

    async def on_payment_succeeded(envelope: Envelope, event: PaymentSucceeded) -> None:
        handled.append(event.order_id)

    consumer = Consumer(broker, broker.service, AmqpSettings(retry_delays_ms=[60_000]))
    queue = await consumer.subscribe(PaymentSucceeded, on_payment_succeeded)
    order_id = str(uuid.uuid4())
    wrong = Envelope.wrap(
        PaymentFailed(order_id=order_id, amount_cents=100, reason="declined"), producer="itest"
    )
    # Straight onto the work queue, as a shovel or a replay to the wrong queue would.
    await broker.channel.default_exchange.publish(codec.encode(wrong), routing_key=queue)
    right = Envelope.wrap(
        PaymentSucceeded(
            order_id=str(uuid.uuid4()),
            amount_cents=100,
            payment_id="p-1",
            gateway_reference="g-1",
        ),
        producer="itest",
    )
    await broker.publish(right)

    await eventually(lambda: handled == [right.correlation_id])
    [letter] = await dead_letters(broker, queue, 1)
    assert letter.message_id == str(wrong.event_id)
    assert letter.headers["x-dead-letter-reason"] == "permanent failure"
    assert "PaymentFailed delivered to" in letter.headers["x-exception-message"]
    assert order_id not in handled
    await consumer.stop()


class _Unprintable(Exception):
    """A handler's bug of the kind nobody anticipates: an exception whose str() fails."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ of the handler's exception failed")


async def test_a_failure_outside_the_ack_policy_is_dead_lettered_by_the_catch_all(
    broker: Broker,
) -> None:
    """The retry path itself fails (str() of the error, for the failure headers): before, the
    delivery stayed neither acked nor rejected, and a prefetch window of them stalled the
    queue."""
    handled: list[str] = []
    poisoned = {order_placed().correlation_id for _ in range(PREFETCH)}

    async def handler(envelope: Envelope, event: OrderPlaced) -> None:
        if event.order_id in poisoned:
            raise _Unprintable()
        handled.append(event.order_id)

    settings = AmqpSettings(prefetch=PREFETCH, retry_delays_ms=[60_000])
    consumer = Consumer(broker, broker.service, settings)
    queue = await consumer.subscribe(OrderPlaced, handler)
    for order_id in poisoned:
        await broker.publish(order_placed(order_id))
    good = order_placed()
    await broker.publish(good)

    await eventually(lambda: handled == [good.correlation_id], timeout_s=20)
    letters = await dead_letters(broker, queue, PREFETCH)
    for letter in letters:
        assert letter.headers["x-dead-letter-reason"] == "consumer error"
        assert letter.headers["x-exception-class"] == "RuntimeError"
        assert "__str__" in letter.headers["x-exception-message"]
    await consumer.stop()


async def test_a_service_cannot_subscribe_outside_the_topology(broker: Broker) -> None:
    consumer = Consumer(broker, ORDER, AmqpSettings())

    async def handler(envelope: Envelope, event: OrderPlaced) -> None:
        raise AssertionError("never subscribed")

    with pytest.raises(ValueError, match="does not subscribe to OrderPlaced"):
        await consumer.subscribe(OrderPlaced, handler)


async def test_invented_event_types_share_one_metric_label(broker: Broker) -> None:
    consumer = Consumer(broker, broker.service, AmqpSettings(retry_delays_ms=[60_000]))

    async def handler(envelope: Envelope, event: OrderPlaced) -> None:
        raise AssertionError("never reached")

    queue = await consumer.subscribe(OrderPlaced, handler)
    invented = [f"Invented{uuid.uuid4().hex}" for _ in range(5)]
    body = json.dumps({"not": "an envelope"}).encode()
    for event_type in invented:
        await raw_publish(broker, body, type=event_type, message_id=event_type)
    await dead_letters(broker, queue, len(invented))

    def counted(event_type: str) -> float:
        labels = {"queue": queue, "event_type": event_type, "outcome": "dead_lettered"}
        return REGISTRY.get_sample_value("messages_consumed_total", labels) or 0.0

    await eventually(lambda: counted("unknown") == len(invented))
    assert all(counted(t) == 0 for t in invented)
    label_values = {
        sample.labels.get("event_type")
        for metric in REGISTRY.collect()
        for sample in metric.samples
    }
    assert not label_values & set(invented)
    await consumer.stop()


def _properties(message: aio_pika.Message) -> dict[str, Any]:
    return {
        "headers": message.headers,
        "message_id": message.message_id,
        "correlation_id": message.correlation_id,
        "type": message.type,
        "content_type": message.content_type,
    }
