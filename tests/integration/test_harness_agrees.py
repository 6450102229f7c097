"""The in-memory bus agrees with RabbitMQ and Redis Streams: the same test bodies, run on each.

Each test is parametrized over the backends with one interface: `memory` (infra.testing's
InMemoryBus, no I/O), `rabbitmq` (the runtime's Broker and Consumer on a real vhost) and
`redis` (the runtime's RedisTransport on the bus Redis, in a namespace of the test's own).
All run the same dispatch; what differs is the transport that carries its decisions out, and that
is what these tests hold to one behaviour: acks, retries through the delay tiers with the
attempt count, dead letters with the same story headers, malformed and misrouted messages,
duplicate deliveries.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import aio_pika
import pytest

from contracts.envelope import Envelope
from contracts.events import Event, OrderPlaced, PaymentFailed
from contracts.topology import dead_letter_queue_name, exchange_name
from infra.messaging.broker import Broker
from infra.messaging.consumer import Consumer
from infra.messaging.errors import PermanentFailure, RetryLater
from infra.messaging.hooks import Hooks, Inbound
from infra.messaging.topology import quorum_arguments
from infra.observability.message_hooks import default_hooks
from infra.settings import AmqpSettings
from infra.testing import InMemoryBus, Recorder, Settled
from tests.integration.events import order_placed
from tests.integration.redis_backend import RedisBackend
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration
SERVICE = "harness-check"
DELAYS_MS = [50, 80]
Handler = Callable[[Envelope, Any], Awaitable[None]]


class Backend(Protocol):
    settled: list[Settled]

    async def subscribe(self, event_type: type[Event], handler: Handler) -> str: ...
    async def publish(self, envelope: Envelope) -> None: ...
    async def publish_raw(self, event_type: str, body: bytes, message_id: str) -> None: ...
    async def settle(self, count: int) -> list[Settled]: ...
    async def dead_letters(self, queue: str, count: int) -> list[dict[str, Any]]: ...


class MemoryBackend:
    def __init__(self) -> None:
        self.bus = InMemoryBus(amqp=AmqpSettings(retry_jitter=0))
        self.settled = self.bus.settled

    async def subscribe(self, event_type: type[Event], handler: Handler) -> str:
        return self.bus.subscribe(SERVICE, event_type, handler, DELAYS_MS)

    async def publish(self, envelope: Envelope) -> None:
        self.bus.publish(envelope)

    async def publish_raw(self, event_type: str, body: bytes, message_id: str) -> None:
        inbound = Inbound(body, {}, message_id, exchange=exchange_name(event_type))
        for queue in self.bus.queues_of(event_type):
            self.bus.publish_raw(queue, inbound)

    async def settle(self, count: int) -> list[Settled]:
        await self.bus.drain()
        assert len(self.settled) == count, self.settled
        return self.settled

    async def dead_letters(self, queue: str, count: int) -> list[dict[str, Any]]:
        letters = [letter.headers for letter in self.bus.dead_letters[queue]]
        assert len(letters) == count
        return letters


class RabbitBackend:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.settled: list[Settled] = []
        settings = AmqpSettings(retry_delays_ms=DELAYS_MS, retry_jitter=0)
        self.consumer = Consumer(broker, SERVICE, settings)

    async def subscribe(self, event_type: type[Event], handler: Handler) -> str:
        return await self.consumer.subscribe(event_type, handler)

    async def publish(self, envelope: Envelope) -> None:
        await self.broker.publish(envelope)

    async def publish_raw(self, event_type: str, body: bytes, message_id: str) -> None:
        exchange = await self.broker.channel.get_exchange(exchange_name(event_type))
        await exchange.publish(aio_pika.Message(body, message_id=message_id), "")

    async def settle(self, count: int) -> list[Settled]:
        await eventually(lambda: len(self.settled) >= count, timeout_s=15)
        assert len(self.settled) == count, self.settled
        return self.settled

    async def dead_letters(self, queue: str, count: int) -> list[dict[str, Any]]:
        channel = await self.broker.new_channel()
        dlq = await channel.declare_queue(
            dead_letter_queue_name(queue), durable=True, arguments=quorum_arguments(AmqpSettings())
        )
        letters: list[dict[str, Any]] = []

        async def fetch() -> bool:
            message = await dlq.get(fail=False, no_ack=True)
            if message is not None:
                letters.append(dict(message.headers))
            return len(letters) >= count

        await eventually(fetch, timeout_s=15)
        return letters


@pytest.fixture(params=["memory", "rabbitmq", pytest.param("redis", marks=pytest.mark.redisbus)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    if request.param == "redis":
        url, namespace = (request.getfixturevalue(f) for f in ("bus_redis_url", "bus_namespace"))
        settings = AmqpSettings(retry_delays_ms=DELAYS_MS, retry_jitter=0)
        redis_backend = RedisBackend(url, SERVICE, namespace, settings)
        await redis_backend.transport.connect()
        try:
            yield redis_backend
        finally:
            await redis_backend.transport.close()
        return
    amqp_url = request.getfixturevalue("amqp_url")
    settled: list[Settled] = []
    hooks = default_hooks()
    recorded = Hooks(consume=(*hooks.consume, Recorder(settled)), publish=hooks.publish)
    broker = Broker(amqp_url, f"{SERVICE}-{uuid.uuid4().hex[:6]}", hooks=recorded)
    await broker.connect()
    rabbit = RabbitBackend(broker)
    rabbit.settled = settled
    try:
        yield rabbit
    finally:
        await rabbit.consumer.stop()
        await broker.close()


def scripted(failures: list[Exception]) -> tuple[Handler, list[str]]:
    """A handler that raises `failures` in turn, then succeeds; and the event ids it saw."""
    seen: list[str] = []

    async def handler(envelope: Envelope, event: Any) -> None:
        seen.append(str(envelope.event_id))
        if failures:
            raise failures.pop(0)

    return handler, seen


async def test_a_handled_event_is_acked_once(backend: Backend) -> None:
    handler, seen = scripted([])
    await backend.subscribe(OrderPlaced, handler)
    envelope = order_placed()
    await backend.publish(envelope)
    settled = await backend.settle(1)
    assert [(s.outcome, s.attempt, s.message_id) for s in settled] == [
        ("acked", 1, str(envelope.event_id))
    ]
    assert seen == [str(envelope.event_id)]


async def test_a_transient_failure_is_retried_through_the_tiers_then_acked(
    backend: Backend,
) -> None:
    handler, seen = scripted([RetryLater("not yet"), RetryLater("still not")])
    await backend.subscribe(OrderPlaced, handler)
    envelope = order_placed()
    await backend.publish(envelope)
    settled = await backend.settle(3)
    assert [(s.outcome, s.attempt) for s in settled] == [
        ("retried", 1),
        ("retried", 2),
        ("acked", 3),
    ]
    assert seen == [str(envelope.event_id)] * 3


async def test_retries_exhausted_end_in_the_dead_letter_queue_with_the_story(
    backend: Backend,
) -> None:
    handler, _ = scripted([RetryLater(f"down {n}") for n in range(10)])
    queue = await backend.subscribe(OrderPlaced, handler)
    envelope = order_placed()
    await backend.publish(envelope)
    settled = await backend.settle(3)
    assert [s.outcome for s in settled] == ["retried", "retried", "dead_lettered"]
    [letter] = await backend.dead_letters(queue, 1)
    assert letter["x-dead-letter-reason"] == "retries exhausted"
    assert letter["x-attempts"] == 3
    assert letter["x-exception-class"] == "RetryLater"
    assert letter["x-exception-message"] == "down 2"
    assert letter["x-original-queue"] == queue
    assert letter["x-original-exchange"] == exchange_name("OrderPlaced")
    assert letter["x-event-id"] == str(envelope.event_id)
    assert letter["x-service"] == SERVICE


async def test_a_permanent_failure_is_dead_lettered_at_once(backend: Backend) -> None:
    handler, seen = scripted([PermanentFailure("no such customer")])
    queue = await backend.subscribe(OrderPlaced, handler)
    await backend.publish(order_placed())
    assert [s.outcome for s in await backend.settle(1)] == ["dead_lettered"]
    [letter] = await backend.dead_letters(queue, 1)
    assert (letter["x-dead-letter-reason"], letter["x-attempts"]) == ("permanent failure", 1)
    assert letter["x-exception-class"] == "PermanentFailure"
    assert len(seen) == 1


async def test_malformed_and_misrouted_messages_never_reach_the_handler(
    backend: Backend,
) -> None:
    handler, seen = scripted([])
    queue = await backend.subscribe(OrderPlaced, handler)
    await backend.publish_raw("OrderPlaced", b"{not json", "bad-json")
    failed = Envelope.wrap(
        PaymentFailed(order_id="o-1", amount_cents=100, reason="declined"), producer="t"
    )
    await backend.publish_raw("OrderPlaced", failed.model_dump_json().encode(), "misrouted")
    assert [s.outcome for s in await backend.settle(2)] == ["dead_lettered"] * 2
    letters = {h["x-event-id"]: h for h in await backend.dead_letters(queue, 2)}
    assert letters["bad-json"]["x-exception-class"] == "InvalidMessage"
    assert "not JSON" in letters["bad-json"]["x-exception-message"]
    assert "PaymentFailed delivered to" in letters["misrouted"]["x-exception-message"]
    assert {h["x-dead-letter-reason"] for h in letters.values()} == {"permanent failure"}
    assert seen == []


async def test_a_duplicate_delivery_reaches_the_handler_again(backend: Backend) -> None:
    # Idempotency is the handlers' job: the transport delivers a copy as a copy.
    handler, seen = scripted([])
    await backend.subscribe(OrderPlaced, handler)
    envelope = order_placed()
    await backend.publish(envelope)
    await backend.publish(envelope)
    assert [s.outcome for s in await backend.settle(2)] == ["acked", "acked"]
    assert seen == [str(envelope.event_id)] * 2
