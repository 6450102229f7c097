"""The consumer's ack / retry / dead-letter policy against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any
from urllib.parse import quote

import aio_pika
import pytest

from contracts.envelope import Envelope
from contracts.events import OrderPlaced
from contracts.topology import (
    dead_letter_queue_name,
    exchange_name,
    jittered_delays,
    retry_tier_name,
)
from infra.devstack import RabbitVhost
from infra.messaging import codec
from infra.messaging.broker import Broker
from infra.messaging.consumer import Consumer
from infra.messaging.topology import quorum_arguments
from infra.settings import AmqpSettings
from tests.integration.events import noting, order_placed
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration


async def dead_letters(broker: Broker, work_queue: str, count: int) -> list[Any]:
    channel = await broker.new_channel()
    dlq = await channel.declare_queue(
        dead_letter_queue_name(work_queue), durable=True, arguments=quorum_arguments(AmqpSettings())
    )
    messages: list[Any] = []

    async def fetch() -> bool:
        message = await dlq.get(fail=False, no_ack=True)
        if message is not None:
            messages.append(message)
        return len(messages) >= count

    await eventually(fetch, timeout_s=15)
    return messages


async def raw_publish(broker: Broker, body: bytes, **properties: Any) -> None:
    exchange = await broker.channel.get_exchange(exchange_name("OrderPlaced"))
    await exchange.publish(aio_pika.Message(body, **properties), "")


async def test_invalid_messages_are_dead_lettered_with_reasons_and_consumption_goes_on(
    broker: Broker,
) -> None:
    handled: list[str] = []
    handler = noting(handled)
    consumer = Consumer(broker, broker.service, AmqpSettings(retry_delays_ms=[100]))
    queue = await consumer.subscribe(OrderPlaced, handler)
    await raw_publish(broker, b"{not json", message_id="bad-json")
    unknown = json.loads(order_placed().model_dump_json())
    unknown["event_type"] = "OrderTeleported"
    await raw_publish(broker, json.dumps(unknown).encode(), message_id="unknown-type")
    good = order_placed()
    await broker.publish(good)

    await eventually(lambda: handled == [good.correlation_id])
    letters = {m.message_id: m.headers for m in await dead_letters(broker, queue, 2)}
    assert letters["bad-json"]["x-exception-class"] == "InvalidMessage"
    assert "not JSON" in letters["bad-json"]["x-exception-message"]
    assert letters["bad-json"]["x-dead-letter-reason"] == "permanent failure"
    assert letters["bad-json"]["x-original-queue"] == queue
    assert letters["bad-json"]["x-original-exchange"] == exchange_name("OrderPlaced")
    assert letters["bad-json"]["x-attempts"] == 1
    assert "unknown event type" in letters["unknown-type"]["x-exception-message"]
    await consumer.stop()


async def test_transient_failures_wait_in_a_delay_tier_without_blocking_the_queue(
    broker: Broker,
) -> None:
    order_of_success: list[str] = []
    attempts: dict[str, int] = {}
    flaky, steady = order_placed(), order_placed()

    async def handler(envelope: Envelope, event: OrderPlaced) -> None:
        attempts[event.order_id] = attempts.get(event.order_id, 0) + 1
        if event.order_id == flaky.correlation_id and attempts[event.order_id] < 3:
            raise ConnectionError("gateway timeout")
        order_of_success.append(event.order_id)

    consumer = Consumer(broker, broker.service, AmqpSettings(retry_delays_ms=[300, 300, 300]))
    await consumer.subscribe(OrderPlaced, handler)
    await broker.publish(flaky)
    await broker.publish(steady)

    await eventually(lambda: len(order_of_success) == 2)
    assert order_of_success == [steady.correlation_id, flaky.correlation_id]
    assert attempts[flaky.correlation_id] == 3
    await consumer.stop()


async def test_retries_of_a_burst_spread_over_the_jittered_variants_of_a_tier(
    broker: Broker, rabbitmq_vhost: RabbitVhost
) -> None:
    async def always_failing(envelope: Envelope, event: OrderPlaced) -> None:
        raise ConnectionError("gateway down")

    # A long tier keeps the retries parked where they can be counted.
    consumer = Consumer(broker, broker.service, AmqpSettings(retry_delays_ms=[600_000]))
    await consumer.subscribe(OrderPlaced, always_failing)
    burst = 30
    for _ in range(burst):
        await broker.publish(order_placed())
    variants = jittered_delays(600_000, AmqpSettings().retry_jitter)
    assert len(variants) == 3
    vhost = quote(rabbitmq_vhost.vhost, safe="")

    def parked() -> list[int]:
        counts = []
        for delay_ms in variants:
            path = f"/queues/{vhost}/{retry_tier_name(broker.service, delay_ms)}"
            counts.append(rabbitmq_vhost.management.request("GET", path).json().get("messages", 0))
        return counts

    # The management API's counts lag a few seconds behind the queues.
    await eventually(lambda: sum(parked()) == burst, timeout_s=20)
    counts = parked()
    # Each variant is picked with probability 1/3: all 30 in one tier has odds ~1e-14.
    assert sum(1 for c in counts if c > 0) >= 2, counts
    await consumer.stop()


async def test_after_the_last_tier_a_message_is_dead_lettered_with_its_story(
    broker: Broker,
) -> None:
    async def always_failing(envelope: Envelope, event: OrderPlaced) -> None:
        raise RuntimeError("database on fire")

    # The service-wide tiers would hold the message for a minute; this queue's own are short.
    consumer = Consumer(broker, broker.service, AmqpSettings(retry_delays_ms=[60_000]))
    queue = await consumer.subscribe(OrderPlaced, always_failing, retry_delays_ms=[100, 100])
    envelope = order_placed()
    await broker.publish(envelope)

    [letter] = await dead_letters(broker, queue, 1)
    assert codec.decode(letter.body)[0] == envelope
    headers = letter.headers
    assert headers["x-dead-letter-reason"] == "retries exhausted"
    assert headers["x-attempts"] == 3
    assert headers["x-exception-class"] == "RuntimeError"
    assert "database on fire" in headers["x-traceback"]
    assert headers["x-event-id"] == str(envelope.event_id)
    assert headers["x-event-type"] == "OrderPlaced"
    assert headers["x-service"] == broker.service
    assert headers["x-first-failure-at"] <= headers["x-last-failure-at"]
    await consumer.stop()


async def test_stop_lets_in_flight_handlers_finish(broker: Broker) -> None:
    release = asyncio.Event()
    finished: list[str] = []

    async def slow(envelope: Envelope, event: OrderPlaced) -> None:
        await release.wait()
        finished.append(event.order_id)

    consumer = Consumer(broker, broker.service, AmqpSettings())
    await consumer.subscribe(OrderPlaced, slow)
    envelope = order_placed()
    await broker.publish(envelope)
    await eventually(lambda: consumer.handling == 1)
    stopping = asyncio.create_task(consumer.stop(timeout_s=10))
    release.set()
    await stopping
    assert finished == [envelope.correlation_id]


async def test_the_broker_has_the_acks_of_the_deliveries_in_hand_once_stop_returns(
    amqp_url: str,
) -> None:
    """Acks are queued, not awaited until written: a service that closes its connection right
    after stop() must not leave the deliveries it finished to be delivered again."""
    broker = Broker(amqp_url, f"itest-{uuid.uuid4().hex[:6]}")
    await broker.connect()
    release = asyncio.Event()
    finished: list[str] = []

    async def held(envelope: Envelope, event: OrderPlaced) -> None:
        await release.wait()
        finished.append(event.order_id)

    settings = AmqpSettings()
    consumer = Consumer(broker, broker.service, settings)
    queue_name = await consumer.subscribe(OrderPlaced, held)
    await asyncio.gather(*(broker.publish(order_placed()) for _ in range(settings.prefetch)))
    await eventually(lambda: consumer.handling == settings.prefetch)
    stopping = asyncio.create_task(consumer.stop(timeout_s=10))
    await asyncio.sleep(0.2)  # the consumer's cancel is through
    release.set()
    await stopping
    await broker.close()
    assert len(finished) == settings.prefetch

    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        assert queue.declaration_result.message_count == 0
    finally:
        await connection.close()
