"""The backends tests/integration/test_harness_agrees.py runs its test bodies on: one
interface over the in-memory bus, RabbitMQ and NATS JetStream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aio_pika
from nats.js.api import StreamInfo

from contracts.envelope import Envelope
from contracts.events import Event
from contracts.topology import dead_letter_queue_name, exchange_name
from infra.messaging.broker import Broker
from infra.messaging.consumer import Consumer
from infra.messaging.hooks import Inbound
from infra.messaging.jetstream import wire
from infra.messaging.jetstream.bus import JetStreamBus
from infra.messaging.jetstream.subscriber import JetStreamSubscriber
from infra.messaging.topology import quorum_arguments
from infra.messaging.transport import Publisher, Subscriber
from infra.settings import AmqpSettings
from infra.testing import InMemoryBus, Settled
from tests.integration.waiting import eventually

SERVICE = "harness-check"
DELAYS_MS = [50, 80]
# The retry tiers of every backend on a real bus, without jitter.
HARNESS_AMQP = AmqpSettings(retry_delays_ms=DELAYS_MS, retry_jitter=0)
Handler = Callable[[Envelope, Any], Awaitable[None]]


class Backend(Protocol):
    settled: list[Settled]

    async def subscribe(self, event_type: type[Event], handler: Handler) -> str: ...
    async def publish(self, envelope: Envelope) -> None: ...
    async def deliver_again(self, envelope: Envelope) -> None: ...
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

    async def deliver_again(self, envelope: Envelope) -> None:
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


class BusBackend:
    """A backend on a real bus: the runtime's subscriber there, and the settlements the
    test's hooks record."""

    def __init__(self, consumer: Subscriber, publisher: Publisher) -> None:
        self.consumer = consumer
        self.publisher = publisher
        self.settled: list[Settled] = []

    async def subscribe(self, event_type: type[Event], handler: Handler) -> str:
        return await self.consumer.subscribe(event_type, handler)

    async def publish(self, envelope: Envelope) -> None:
        await self.publisher.publish(envelope)

    async def settle(self, count: int) -> list[Settled]:
        await eventually(lambda: len(self.settled) >= count, timeout_s=15)
        assert len(self.settled) == count, self.settled
        return self.settled


class RabbitBackend(BusBackend):
    def __init__(self, broker: Broker) -> None:
        super().__init__(Consumer(broker, SERVICE, HARNESS_AMQP), broker)
        self.broker = broker

    async def deliver_again(self, envelope: Envelope) -> None:
        await self.broker.publish(envelope)

    async def publish_raw(self, event_type: str, body: bytes, message_id: str) -> None:
        exchange = await self.broker.channel.get_exchange(exchange_name(event_type))
        await exchange.publish(aio_pika.Message(body, message_id=message_id), "")

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


class NatsBackend(BusBackend):
    def __init__(self, bus: JetStreamBus) -> None:
        super().__init__(JetStreamSubscriber(bus, SERVICE, HARNESS_AMQP), bus)
        self.bus = bus

    async def deliver_again(self, envelope: Envelope) -> None:
        # Published again under its own event id, the stream would de-duplicate it: the same
        # event stored a second time stands for a redelivery (an ack lost, past the window).
        body = envelope.model_dump_json().encode()
        await self.publish_raw(envelope.event_type, body, str(envelope.event_id), "again")

    async def publish_raw(
        self, event_type: str, body: bytes, message_id: str, msg_id_suffix: str = ""
    ) -> None:
        headers = {wire.EVENT_ID: message_id, wire.MSG_ID: message_id + msg_id_suffix}
        subject = self.bus.names.event_subject(event_type)
        await self.bus.js.publish(subject, body, headers=headers)

    async def dead_letters(self, queue: str, count: int) -> list[dict[str, Any]]:
        stream = self.bus.names.dead_letter_stream(queue)
        info: list[StreamInfo] = []

        async def stored() -> bool:
            info[:] = [await self.bus.js.stream_info(stream)]
            return info[0].state.messages >= count

        await eventually(stored, timeout_s=15)
        assert info[0].state.messages == count
        first = info[0].state.first_seq
        letters = []
        for seq in range(first, first + count):
            raw = await self.bus.js.get_msg(stream, seq)
            letters.append(wire.application_headers(raw.headers))
        return letters
