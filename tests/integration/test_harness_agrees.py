"""The buses agree: the same test bodies, run on each.

Each test is parametrized over three backends with one interface
(tests/integration/harness_backends.py): `memory` (infra.testing's InMemoryBus, no I/O),
`rabbitmq` (the runtime's Broker and Consumer on a real vhost), `nats` (the JetStream
transport on a real server, streams under a prefix of this test's own) and `redis` (the
RedisTransport on the bus Redis, in a key namespace of the test's own). All run the same
dispatch; what differs is the transport that carries its decisions out, and that is what these
tests hold to one behaviour: acks, retries through the delay tiers with the attempt count, dead
letters with the same story headers, malformed and misrouted messages, duplicate deliveries.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts.envelope import Envelope
from contracts.events import OrderPlaced, PaymentFailed
from contracts.topology import exchange_name
from infra.messaging.broker import Broker
from infra.messaging.errors import PermanentFailure, RetryLater
from infra.messaging.hooks import Hooks
from infra.messaging.jetstream.bus import JetStreamBus
from infra.observability.message_hooks import default_hooks
from infra.settings import AmqpSettings, NatsSettings
from infra.testing import Recorder, Settled
from tests.integration.events import order_placed
from tests.integration.harness_backends import (
    DELAYS_MS,
    SERVICE,
    Backend,
    Handler,
    MemoryBackend,
    NatsBackend,
    RabbitBackend,
)
from tests.integration.redis_backend import RedisBackend
from tests.nats_streams import delete_streams, unique_prefix

pytestmark = pytest.mark.integration


@pytest.fixture(
    params=[
        "memory",
        "rabbitmq",
        pytest.param("nats", marks=pytest.mark.natsbus),
        pytest.param("redis", marks=pytest.mark.redisbus),
    ]
)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    if request.param == "redis":
        url, namespace = (request.getfixturevalue(f) for f in ("bus_redis_url", "bus_namespace"))
        redis = RedisBackend(
            url, SERVICE, namespace, AmqpSettings(retry_delays_ms=DELAYS_MS, retry_jitter=0)
        )
        await redis.transport.connect()
        try:
            yield redis
        finally:
            await redis.transport.close()
        return
    settled: list[Settled] = []
    hooks = default_hooks(request.param)
    recorded = Hooks(consume=(*hooks.consume, Recorder(settled)), publish=hooks.publish)
    if request.param == "nats":
        async for nats in _nats_backend(request.getfixturevalue("nats_url"), recorded):
            nats.settled = settled
            yield nats
        return
    broker = Broker(request.getfixturevalue("amqp_url"), _unique(SERVICE), hooks=recorded)
    await broker.connect()
    rabbit = RabbitBackend(broker)
    rabbit.settled = settled
    try:
        yield rabbit
    finally:
        await rabbit.consumer.stop()
        await broker.close()


async def _nats_backend(url: str, hooks: Hooks) -> AsyncIterator[NatsBackend]:
    prefix = unique_prefix()
    bus = JetStreamBus(url, _unique(SERVICE), NatsSettings(prefix=prefix, ack_wait_s=2), hooks)
    try:
        await bus.connect()
        backend = NatsBackend(bus)
        try:
            yield backend
        finally:
            await backend.consumer.stop()
            await bus.close()
    finally:
        await delete_streams(url, prefix)


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


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
    assert [s.error for s in settled] == ["RetryLater: not yet", "RetryLater: still not", None]
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
    await backend.deliver_again(envelope)
    assert [s.outcome for s in await backend.settle(2)] == ["acked", "acked"]
    assert seen == [str(envelope.event_id)] * 2
