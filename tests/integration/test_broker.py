"""Topology, publisher confirms, returns and nacks against the real RabbitMQ."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import aio_pika
import pytest

from contracts.envelope import Envelope
from contracts.events import OrderPlaced, PaymentSucceeded
from contracts.topology import (
    dead_letter_queue_name,
    exchange_name,
    retry_return_exchange_name,
    retry_tier_name,
)
from infra.devstack import RabbitVhost
from infra.messaging import codec
from infra.messaging.broker import Broker
from infra.messaging.consumer import Consumer
from infra.messaging.errors import PublishFailed
from infra.settings import AmqpSettings
from tests.integration.events import order_placed

pytestmark = pytest.mark.integration


async def test_subscription_declares_quorum_queue_dlq_and_retry_tiers(
    broker: Broker, rabbitmq_vhost: RabbitVhost
) -> None:
    settings = AmqpSettings(retry_delays_ms=[100, 2_000], retry_jitter=0.2)
    name = await Consumer(broker, broker.service, settings).subscribe(OrderPlaced, _ignore)

    vhost = quote(rabbitmq_vhost.vhost, safe="")

    def queue(q: str) -> Any:
        response = rabbitmq_vhost.management.request("GET", f"/queues/{vhost}/{q}")
        assert response.status_code == 200, q
        return response.json()

    work = queue(name)
    assert work["durable"] is True
    assert work["arguments"]["x-queue-type"] == "quorum"
    assert work["arguments"]["x-dead-letter-exchange"] == "dead-letters"
    assert work["arguments"]["x-dead-letter-strategy"] == "at-least-once"
    assert queue(dead_letter_queue_name(name))["arguments"]["x-queue-type"] == "quorum"
    # Leaders spread over a cluster's nodes and an explicit membership, on every queue (a
    # single-node broker accepts both and makes one member).
    for declared in (work, queue(dead_letter_queue_name(name))):
        assert declared["arguments"]["x-queue-leader-locator"] == "balanced"
        assert declared["arguments"]["x-quorum-initial-group-size"] == settings.quorum_group_size
    for delay_ms in (100, 90, 80, 2_000, 1_800, 1_600):  # each delay and its jittered variants
        tier_name = retry_tier_name(broker.service, delay_ms)
        tier = queue(tier_name)["arguments"]
        assert tier["x-message-ttl"] == delay_ms
        # Back to the work queue by the routing key the retry was published with.
        assert tier["x-dead-letter-exchange"] == retry_return_exchange_name(broker.service)
        assert "x-dead-letter-routing-key" not in tier
        assert tier["x-queue-type"] == "quorum"  # classic queues dead-letter at most once
        assert tier["x-queue-leader-locator"] == "balanced"
        assert tier["x-dead-letter-strategy"] == "at-least-once"
        tier_bindings = rabbitmq_vhost.management.request(
            "GET", f"/exchanges/{vhost}/{quote(tier_name, safe='')}/bindings/source"
        ).json()
        assert [b["destination"] for b in tier_bindings] == [tier_name]
    bindings = rabbitmq_vhost.management.request(
        "GET", f"/exchanges/{vhost}/{exchange_name('OrderPlaced')}/bindings/source"
    ).json()
    assert name in {b["destination"] for b in bindings}
    back = rabbitmq_vhost.management.request(
        "GET", f"/exchanges/{vhost}/{retry_return_exchange_name(broker.service)}/bindings/source"
    ).json()
    assert [(b["destination"], b["routing_key"]) for b in back] == [(name, name)]


async def test_publish_returns_once_confirmed_and_the_message_is_queued(broker: Broker) -> None:
    channel = await broker.new_channel()
    queue = await channel.declare_queue(exclusive=True)
    exchange = await channel.declare_exchange(
        exchange_name("OrderPlaced"), aio_pika.ExchangeType.FANOUT, durable=True
    )
    await queue.bind(exchange)
    envelope = order_placed()
    await broker.publish(envelope)
    message = await queue.get(timeout=5)
    assert message is not None
    assert codec.decode(message.body)[0] == envelope
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == str(envelope.event_id)
    await message.ack()


async def test_an_unroutable_publish_raises_instead_of_vanishing(broker: Broker) -> None:
    channel = await broker.new_channel()
    lonely = f"itest.lonely.{uuid.uuid4().hex[:6]}"
    await channel.declare_exchange(lonely, aio_pika.ExchangeType.FANOUT, auto_delete=True)
    with pytest.raises(PublishFailed, match="unroutable"):
        await broker.send(codec.encode(order_placed()), lonely, "", "OrderPlaced")


async def test_a_nacked_publish_raises(broker: Broker) -> None:
    channel = await broker.new_channel()
    name = f"itest.full.{uuid.uuid4().hex[:6]}"
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, auto_delete=True)
    # A queue that refuses every message makes the broker answer the publish with basic.nack.
    full = await channel.declare_queue(
        exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
    )
    await full.bind(exchange)
    envelope = Envelope.wrap(
        PaymentSucceeded(order_id="o", amount_cents=1, payment_id="p", gateway_reference="g"),
        producer="itest",
    )
    with pytest.raises(PublishFailed, match="refused"):
        await broker.send(codec.encode(envelope), name, "", "PaymentSucceeded")


async def _ignore(envelope: Envelope, event: object) -> None:
    return None
