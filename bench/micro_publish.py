"""Publisher micro-benchmark: the runtime's Broker.publish against raw aio-pika.

All three variants publish the same envelopes, JSON-encoded per publish, persistent, mandatory,
to a durable fanout exchange bound to a quorum queue, and wait for the broker's confirm:
- runtime:  Broker.publish (its one confirming channel, codec.amqp_properties, metrics,
            error mapping) with `inflight` publishes gathered at a time;
- raw:      aio_pika Exchange.publish on a robust connection's confirming channel, same window;
- raw-each: the same raw publish, awaiting each confirm before the next.
So the runtime/raw ratio is the wrapper's cost and raw/raw-each is what the window buys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import aio_pika
from aio_pika.abc import AbstractExchange

from bench.micro_readback import Received, confirms_on, queue_settings, same
from contracts.envelope import Envelope
from contracts.events import OrderLine, OrderPlaced
from contracts.topology import exchange_name
from infra.messaging.broker import Broker
from infra.messaging.codec import encode
from infra.messaging.topology import declare_event_exchange

Publish = Callable[[Envelope], Awaitable[object]]
SINK_QUEUE = "bench.publish-sink"


def envelopes(count: int) -> list[Envelope]:
    return [
        Envelope.wrap(
            OrderPlaced(
                order_id=f"bench-{i}",
                customer_id="c-1",
                payment_method="tok_ok",
                lines=[OrderLine(sku="SKU-0001", quantity=1)],
            ),
            producer="bench",
        )
        for i in range(count)
    ]


def raw_message(envelope: Envelope) -> aio_pika.Message:
    # The message a hand-written aio-pika publisher builds. Its frames are the runtime's own
    # (codec.encode and codec.amqp_properties give the same properties), built the
    # aio_pika.Message way, as a raw aio-pika user would.
    return encode(envelope)


async def windowed(publish: Publish, items: Sequence[Envelope], inflight: int) -> float:
    """Messages/s publishing `inflight` at a time (gather over a window)."""
    started = time.perf_counter()
    for i in range(0, len(items), inflight):
        await asyncio.gather(*(publish(e) for e in items[i : i + inflight]))
    return len(items) / (time.perf_counter() - started)


async def one_by_one(publish: Publish, items: Sequence[Envelope]) -> float:
    started = time.perf_counter()
    for envelope in items:
        await publish(envelope)
    return len(items) / (time.perf_counter() - started)


class PublishBench:
    def __init__(self, amqp_url: str) -> None:
        self.url = amqp_url
        self.broker = Broker(amqp_url, "bench-publisher")
        self.raw: aio_pika.abc.AbstractRobustConnection | None = None
        self.raw_channel: aio_pika.abc.AbstractChannel | None = None
        self.exchange: AbstractExchange | None = None
        self.queue: aio_pika.abc.AbstractQueue | None = None

    async def open(self) -> None:
        await self.broker.connect()
        self.raw = await aio_pika.connect_robust(self.url)
        channel = await self.raw.channel(publisher_confirms=True, on_return_raises=True)
        self.raw_channel = channel
        self.exchange = await declare_event_exchange(channel, "OrderPlaced")
        admin = await self.raw.channel()
        self.queue = await admin.declare_queue(
            SINK_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await self.queue.bind(exchange_name("OrderPlaced"))

    async def close(self) -> None:
        await self.broker.close()
        if self.raw is not None:
            await self.raw.close()

    async def purge(self) -> None:
        assert self.queue is not None
        await self.queue.purge()

    async def read_back(self) -> None:
        """Print the sink queue, each variant's confirms and one message of each as the broker
        delivers it; stop (Mismatch) if the variants differ."""
        assert self.queue is not None
        assert self.raw_channel is not None
        print("\n== publisher: what the variants run with, read back ==")
        print(f"  sink queue {SINK_QUEUE}: {await queue_settings(self.url, SINK_QUEUE)}")
        confirms = {
            "runtime": await confirms_on(self.broker.channel),
            "raw": await confirms_on(self.raw_channel),
        }
        same("confirms", confirms)
        received: dict[str, Received] = {}
        sample = envelopes(1)[0]
        for name, publish in (("runtime", self.runtime_publish), ("raw", self.raw_publish)):
            await self.purge()
            await publish(sample)
            message = await self.queue.get(no_ack=True, timeout=5)
            received[name] = Received.of(message)
        same("messages", received)

    async def runtime_publish(self, envelope: Envelope) -> None:
        await self.broker.publish(envelope)

    async def raw_publish(self, envelope: Envelope) -> object:
        assert self.exchange is not None
        return await self.exchange.publish(raw_message(envelope), "", mandatory=True, timeout=10)

    async def variant(
        self, name: str, items: Sequence[Envelope], inflight: int
    ) -> tuple[float, float]:
        """(messages/s, CPU µs of this process per message). The CPU figure is the cost of
        the client code itself, much less sensitive than the rate to other load on the box."""
        cpu = time.process_time()
        try:
            if name == "runtime":
                rate = await windowed(self.runtime_publish, items, inflight)
            elif name == "raw":
                rate = await windowed(self.raw_publish, items, inflight)
            else:
                rate = await one_by_one(self.raw_publish, items)
            return rate, 1e6 * (time.process_time() - cpu) / len(items)
        finally:
            await self.purge()  # the sink queue never grows across variants
