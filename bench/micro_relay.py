"""Relay micro-benchmark: consume -> validate -> confirmed publish, runtime vs FastStream.

Every relay reads OrderPlaced from a quorum queue declared the same way (declare_subscription),
decode and validate it with the same codec (envelope + payload schema), wrap a derived
StockReservationFailed and publish it persistent, mandatory and confirmed before the ack,
with the same prefetch. Each OrderPlaced carries a `traceparent`, as every message between the
services does (their spans are unsampled but valid, infra.observability.tracing): the runtime
continues that trace, the others ignore it. Only the framework differs:
- runtime:    infra Consumer (ack policy, retry/DLQ machinery, metrics) + Broker.publish;
- raw:        aio-pika by hand, the floor: a consumer callback, `message.process()`, the
              codec, and a publish on a confirming channel with the same message properties,
              mandatory (returns raised) and bounded by a timeout, as the raw publisher of
              bench.micro_publish and the runtime's own publish are;
- FastStream: RabbitBroker subscriber + broker.publish on its confirming default channel,
              per-message logging off (its default logs two lines a message, which would
              only slow it down).
Timed from the first delivery handled to the last publish confirmed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aio_pika
from faststream.rabbit import Channel, ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage

from bench.micro_publish import envelopes, raw_message
from bench.micro_readback import Received, consumer_settings, queue_settings, same
from contracts.envelope import Envelope
from contracts.events import Event, OrderPlaced, StockReservationFailed
from contracts.topology import exchange_name, queue_name
from infra.messaging import codec
from infra.messaging.broker import Broker
from infra.messaging.consumer import Consumer
from infra.messaging.topology import declare_event_exchange, declare_subscription
from infra.settings import AmqpSettings

SINK_QUEUE = "bench.relay-sink"
RUNTIME, FASTSTREAM, RAW = "bench-rt", "bench-fs", "bench-raw"
RELAYS = (RUNTIME, FASTSTREAM, RAW)
VARIANTS = {RUNTIME: "runtime", RAW: "raw", FASTSTREAM: "faststream"}
OUT_TYPE = StockReservationFailed.event_type
WAIT_S = 120.0
RAW_TIMEOUT_S = 10.0  # the bound bench.micro_publish's raw variant and Broker.publish use


def traced_message(envelope: Envelope, index: int) -> aio_pika.Message:
    """`envelope` as a service publishes it: with the trace context of the (unsampled) span
    that caused it."""
    return codec.encode(envelope, {"traceparent": f"00-{index + 1:032x}-{index + 1:016x}-00"})


def derived(envelope: Envelope, event: Event) -> Envelope:
    assert isinstance(event, OrderPlaced)
    failed = StockReservationFailed(order_id=event.order_id, reason="bench relay")
    return Envelope.wrap(failed, producer="bench", causation_id=str(envelope.event_id))


class Progress:
    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.first = self.last = 0.0
        self.cpu_first = self.cpu_last = 0.0
        self.done = asyncio.Event()

    def started(self) -> None:
        if self.first == 0.0:
            self.first = time.perf_counter()
            self.cpu_first = time.process_time()

    def finished(self) -> None:
        self.count += 1
        if self.count == self.target:
            self.last = time.perf_counter()
            self.cpu_last = time.process_time()
            self.done.set()

    async def rate(self) -> tuple[float, float]:
        """(events/s, CPU µs of this process per event)."""
        await asyncio.wait_for(self.done.wait(), WAIT_S)
        cpu_us = 1e6 * (self.cpu_last - self.cpu_first) / self.target
        return self.target / (self.last - self.first), cpu_us


class RelayBench:
    def __init__(self, amqp_url: str, prefetch: int) -> None:
        self.url = amqp_url
        self.settings = AmqpSettings(
            url=amqp_url, prefetch=prefetch, max_in_flight=64, retry_delays_ms=[1000]
        )
        self.admin: aio_pika.abc.AbstractRobustConnection | None = None
        # While set, each relay notes its consumer as the broker lists it (warm-up only: the
        # management API takes about a second to list a new consumer).
        self.reading_back = False
        self.consumers: dict[str, str] = {}

    async def open(self) -> None:
        self.admin = await aio_pika.connect_robust(self.url)
        channel = await self.admin.channel()
        for service in RELAYS:
            await declare_subscription(channel, service, OrderPlaced.event_type, self.settings)
        await declare_event_exchange(channel, OUT_TYPE)
        sink = await channel.declare_queue(
            SINK_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await sink.bind(exchange_name(OUT_TYPE))

    async def close(self) -> None:
        if self.admin is not None:
            await self.admin.close()

    async def preload(self, count: int) -> None:
        """`count` OrderPlaced into both relays' queues (they share the fanout exchange)."""
        assert self.admin is not None
        channel = await self.admin.channel(publisher_confirms=True)
        exchange = await declare_event_exchange(channel, OrderPlaced.event_type)
        items = [traced_message(e, i) for i, e in enumerate(envelopes(count))]
        for i in range(0, count, 256):
            await asyncio.gather(*(exchange.publish(m, "") for m in items[i : i + 256]))
        await channel.close()

    async def relayed(self, service: str, progress: Progress) -> tuple[float, float]:
        """The relay's figures once it relayed them all (and its consumer as the broker
        lists it, while reading back)."""
        figures = await progress.rate()
        if self.reading_back:
            source = queue_name(service, OrderPlaced.event_type)
            self.consumers[VARIANTS[service]] = await consumer_settings(self.url, source)
        return figures

    async def read_back(self) -> None:
        """Print each relay's source queue and consumer as the broker reports them; stop
        (Mismatch) if the relays differ. Needs one warm-up round with `reading_back` set."""
        print("\n== relay: what the variants run with, read back ==")
        queues = {
            VARIANTS[service]: await queue_settings(
                self.url, queue_name(service, OrderPlaced.event_type)
            )
            for service in RELAYS
        }
        same("queue", queues)
        same("consumer", self.consumers)
        same("input", await self._one_input_each())
        print(f"  sink queue {SINK_QUEUE}: {await queue_settings(self.url, SINK_QUEUE)}")

    async def _one_input_each(self) -> dict[str, Received]:
        """One OrderPlaced as each relay's queue holds it (its `traceparent` included),
        fetched back from the broker; the queues are left empty."""
        assert self.admin is not None
        await self.preload(1)
        channel = await self.admin.channel()
        try:
            received = {}
            for service in RELAYS:
                queue = await channel.get_queue(queue_name(service, OrderPlaced.event_type))
                message = await queue.get(no_ack=True, timeout=RAW_TIMEOUT_S)
                received[VARIANTS[service]] = Received.of(message)
            return received
        finally:
            await channel.close()

    async def purge(self, service: str) -> None:
        assert self.admin is not None
        channel = await self.admin.channel()
        for name in (SINK_QUEUE, queue_name(service, OrderPlaced.event_type)):
            await (await channel.get_queue(name)).purge()
        await channel.close()

    async def runtime(self, count: int) -> tuple[float, float]:
        broker = Broker(self.url, RUNTIME)
        await broker.connect()
        progress = Progress(count)

        async def handler(envelope: Envelope, event: Any) -> None:
            progress.started()
            await broker.publish(derived(envelope, event))
            progress.finished()

        consumer = Consumer(broker, RUNTIME, self.settings)
        try:
            await consumer.subscribe(OrderPlaced, handler)
            return await self.relayed(RUNTIME, progress)
        finally:
            await consumer.stop()
            await broker.close()
            await self.purge(RUNTIME)

    async def raw(self, count: int) -> tuple[float, float]:
        connection = await aio_pika.connect_robust(self.url)
        progress = Progress(count)
        try:
            consume = await connection.channel()
            await consume.set_qos(prefetch_count=self.settings.prefetch)
            publish = await connection.channel(publisher_confirms=True, on_return_raises=True)
            out = await publish.get_exchange(exchange_name(OUT_TYPE))
            queue = await consume.get_queue(queue_name(RAW, OrderPlaced.event_type))

            async def relay(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process(requeue=True):
                    progress.started()
                    envelope, event = codec.decode(message.body)
                    reply = raw_message(derived(envelope, event))
                    await out.publish(reply, "", mandatory=True, timeout=RAW_TIMEOUT_S)
                    progress.finished()

            tag = await queue.consume(relay)
            try:
                return await self.relayed(RAW, progress)
            finally:
                await queue.cancel(tag)
        finally:
            await connection.close()
            await self.purge(RAW)

    async def faststream(self, count: int) -> tuple[float, float]:
        channel = Channel(prefetch_count=self.settings.prefetch, publisher_confirms=True)
        broker = RabbitBroker(
            self.url, default_channel=channel, logger=None, log_level=logging.WARNING
        )
        progress = Progress(count)
        out = RabbitExchange(exchange_name(OUT_TYPE), type=ExchangeType.FANOUT, durable=True)
        source = RabbitQueue(queue_name(FASTSTREAM, OrderPlaced.event_type), declare=False)

        @broker.subscriber(source)
        async def relay(message: RabbitMessage) -> None:
            progress.started()
            envelope, event = codec.decode(message.body)
            reply = derived(envelope, event)
            await broker.publish(
                reply.model_dump_json().encode(),
                exchange=out,
                persist=True,
                mandatory=True,
                content_type=codec.CONTENT_TYPE,
                message_id=str(reply.event_id),
                correlation_id=reply.correlation_id,
                message_type=reply.event_type,
                timestamp=reply.occurred_at,
                headers={"x-schema-version": reply.schema_version},
            )
            progress.finished()

        try:
            await broker.start()
            return await self.relayed(FASTSTREAM, progress)
        finally:
            await broker.stop()
            await self.purge(FASTSTREAM)
