"""What the Redis Streams bus adds to the agreement tests (test_harness_agrees.py): crash
redelivery after the visibility timeout, the delivery limit, retries that reach only the
failing queue, jitter within a tier, trimming that never drops an unacked entry, refused
publishes, and a server without an AOF refused. Real servers; dead consumers are processes
killed with SIGKILL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from contracts.envelope import Envelope
from contracts.events import OrderPlaced
from infra.messaging.dispatch import Handler
from infra.messaging.errors import PublishFailed, RetryLater
from infra.messaging.redisbus import BusNotDurable, RedisTransport
from infra.messaging.redisbus.fields import entries_of
from infra.settings import AmqpSettings, RedisBusSettings
from infra.testing import Settled
from tests.conftest import free_port
from tests.integration.events import order_placed
from tests.integration.redis_backend import TEST_BUS, redis_transport
from tests.integration.redis_process import OwnRedis
from tests.integration.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.redisbus]
SERVICE = "bus-check"


class Bus:
    """Transports on the test's namespace, closed at the end."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url, self.namespace = url, namespace
        self.transports: list[RedisTransport] = []

    async def transport(
        self, settled: list[Settled], service: str = SERVICE, **amqp: Any
    ) -> RedisTransport:
        transport = redis_transport(
            self.url, service, self.namespace, settled, AmqpSettings(**amqp), TEST_BUS
        )
        await transport.connect()
        self.transports.append(transport)
        return transport


@pytest.fixture
async def bus(bus_redis_url: str, bus_namespace: str) -> AsyncIterator[Bus]:
    bus = Bus(bus_redis_url, bus_namespace)
    yield bus
    for transport in bus.transports:
        await transport.close()


@pytest.fixture
def holders(bus_redis_url: str, bus_namespace: str) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(10)


def hold_and_kill(url: str, namespace: str, started: list[subprocess.Popen[str]]) -> None:
    """Start a consumer process, wait until its handler holds a delivery, SIGKILL it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.redis_holder", url, namespace, SERVICE],
        stdout=subprocess.PIPE,
        text=True,
    )
    started.append(process)
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    for line in process.stdout:
        if line.startswith("holding") or time.monotonic() > deadline:
            break
    process.kill()
    process.wait(10)


async def published_to_an_idle_group(
    bus: Bus, settled: list[Settled], seen: list[str], **amqp: Any
) -> tuple[str, Envelope, Handler]:
    """An OrderPlaced published to a queue whose group exists but has no reader (its first
    consumer stopped): the queue, the event, and a handler that notes each event it runs in
    `seen`."""

    async def handler(envelope: Envelope, event: Any) -> None:
        seen.append(str(envelope.event_id))

    first = await bus.transport(settled, **amqp)
    queue = await first.subscriber.subscribe(OrderPlaced, handler)
    await first.subscriber.stop()  # the group exists; the killed process is its only reader
    envelope = order_placed()
    await first.publisher.publish(envelope)
    return queue, envelope, handler


async def test_a_delivery_held_by_a_killed_consumer_is_delivered_again(
    bus: Bus, holders: list[subprocess.Popen[str]]
) -> None:
    settled: list[Settled] = []
    seen: list[str] = []
    _, envelope, handler = await published_to_an_idle_group(bus, settled, seen)
    await asyncio.to_thread(hold_and_kill, bus.url, bus.namespace, holders)
    survivor = await bus.transport(settled)
    await survivor.subscriber.subscribe(OrderPlaced, handler)
    await eventually(lambda: seen, timeout_s=10)
    await eventually(lambda: settled, timeout_s=5)
    assert seen == [str(envelope.event_id)]
    assert [s.outcome for s in settled] == ["acked"]


async def test_a_message_that_kills_its_consumers_is_dead_lettered_at_the_delivery_limit(
    bus: Bus, holders: list[subprocess.Popen[str]]
) -> None:
    settled: list[Settled] = []
    seen: list[str] = []
    queue, envelope, handler = await published_to_an_idle_group(
        bus, settled, seen, delivery_limit=2
    )
    for _ in range(2):  # delivered twice, each time to a consumer that dies on it
        await asyncio.to_thread(hold_and_kill, bus.url, bus.namespace, holders)
    survivor = await bus.transport(settled, delivery_limit=2)
    await survivor.subscriber.subscribe(OrderPlaced, handler)
    key = survivor.keys.dead_letters(queue)
    letters = await eventually(lambda: _entries(survivor, key), timeout_s=15)
    [(_, letter)] = letters
    assert letter.message_id == str(envelope.event_id)
    assert letter.headers["x-dead-letter-reason"] == "delivery limit"
    assert letter.headers["x-delivery-count"] == 3
    assert letter.headers["x-exception-class"] == "DeliveryLimitExceeded"
    assert letter.headers["x-original-queue"] == queue
    assert seen == []  # the survivor never ran it: the third delivery went to the DLQ
    pending = await survivor.client.xpending(survivor.keys.events("OrderPlaced"), queue)
    assert pending["pending"] == 0


async def _entries(transport: RedisTransport, key: str) -> list[Any]:
    return entries_of(await transport.client.xrange(key))


async def test_a_retry_reaches_only_the_queue_whose_handler_failed(bus: Bus) -> None:
    failing_settled: list[Settled] = []
    other_settled: list[Settled] = []
    failures = [RetryLater("not yet")]

    async def failing(envelope: Envelope, event: Any) -> None:
        if failures:
            raise failures.pop()

    async def fine(envelope: Envelope, event: Any) -> None:
        return None

    failing_bus = await bus.transport(failing_settled, "one", retry_delays_ms=[50])
    other_bus = await bus.transport(other_settled, "two", retry_delays_ms=[50])
    await failing_bus.subscriber.subscribe(OrderPlaced, failing)
    await other_bus.subscriber.subscribe(OrderPlaced, fine)
    await failing_bus.publisher.publish(order_placed())
    await eventually(lambda: len(failing_settled) >= 2, timeout_s=10)
    await asyncio.sleep(0.3)  # time enough for a stray copy to reach the other queue
    assert [(s.outcome, s.attempt) for s in failing_settled] == [("retried", 1), ("acked", 2)]
    assert [s.outcome for s in other_settled] == ["acked"]


async def test_a_retry_waits_one_of_its_tiers_jittered_variants(bus: Bus) -> None:
    settled: list[Settled] = []
    attempts: list[float] = []

    async def handler(envelope: Envelope, event: Any) -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RetryLater("later")

    transport = await bus.transport(settled, retry_delays_ms=[600], retry_jitter=0.5)
    await transport.subscriber.subscribe(OrderPlaced, handler)
    await transport.publisher.publish(order_placed())
    await eventually(lambda: len(settled) >= 2, timeout_s=10)
    waited_s = attempts[1] - attempts[0]
    # Variants of 600 ms with jitter 0.5: 600, 450, 300; the mover adds a few ms.
    assert 0.3 <= waited_s < 0.6 + 0.25, waited_s


async def test_trimming_keeps_every_entry_a_group_has_not_acked(bus: Bus) -> None:
    settled: list[Settled] = []

    async def handler(envelope: Envelope, event: Any) -> None:
        return None

    reader = await bus.transport(settled, "reader")
    laggard = await bus.transport([], "laggard")
    await reader.subscriber.subscribe(OrderPlaced, handler)
    await laggard.subscriber.subscribe(OrderPlaced, handler)
    await laggard.subscriber.stop()  # its group stays, reading nothing
    stream = reader.keys.events("OrderPlaced")
    for _ in range(250):
        await reader.publisher.publish(order_placed())
    await eventually(lambda: len(settled) >= 250, timeout_s=20)
    await asyncio.sleep(TEST_BUS.sweep_interval_s * 3)  # sweeps that trim
    assert await reader.client.xlen(stream) == 250  # the laggard has read none of them
    await reader.client.xgroup_destroy(stream, "laggard.order-placed")
    # Now the reader's group alone counts: everything it acked may go (whole nodes of 100).
    await eventually(lambda: _shorter(reader, stream, 100), timeout_s=10)


async def _shorter(transport: RedisTransport, stream: str, bound: int) -> bool:
    return int(await transport.client.xlen(stream)) <= bound


async def test_a_publish_nobody_would_receive_or_past_the_bound_is_refused(
    bus_redis_url: str, bus_namespace: str, bus: Bus
) -> None:
    transport = await bus.transport([])
    with pytest.raises(PublishFailed) as unroutable:
        await transport.publisher.publish(order_placed())
    assert unroutable.value.kind == "returned"
    small = RedisTransport(
        bus_redis_url,
        SERVICE,
        AmqpSettings(),
        RedisBusSettings(namespace=bus_namespace, max_stream_length=10),
    )
    await small.connect()
    bus.transports.append(small)
    await small.subscriber.subscribe(OrderPlaced, _never_done)
    await small.subscriber.stop()
    for _ in range(10):
        await small.publisher.publish(order_placed())
    with pytest.raises(PublishFailed) as full:
        await small.publisher.publish(order_placed())
    assert full.value.kind == "nacked"
    assert await small.client.xlen(small.keys.events("OrderPlaced")) == 10


async def _never_done(envelope: Envelope, event: Any) -> None:
    raise AssertionError("not consumed in this test")


async def test_a_server_without_an_append_only_file_is_refused() -> None:
    server = OwnRedis(free_port())
    server.start()
    transport = RedisTransport(server.url, SERVICE, AmqpSettings(), RedisBusSettings())
    try:
        await eventually(lambda: _pings(transport), timeout_s=10)
        with pytest.raises(BusNotDurable, match="append-only"):
            await transport.connect()
    finally:
        await transport.client.aclose()
        server.kill()


async def _pings(transport: RedisTransport) -> bool:
    try:
        return bool(await transport.client.ping())
    except Exception:
        return False
