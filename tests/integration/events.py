"""Valid envelopes for tests that need a real event on the wire, and a queue of the test's own
to see which events were published."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import aio_pika

from contracts.envelope import Envelope
from contracts.events import Event, OrderLine, OrderPlaced
from contracts.topology import exchange_name
from infra.messaging import codec
from tests.integration.waiting import eventually


def order_placed(order_id: str | None = None, producer: str = "itest") -> Envelope:
    """An OrderPlaced envelope for a fresh (or the given) order."""
    event = OrderPlaced(
        order_id=order_id or str(uuid.uuid4()),
        customer_id="c-1",
        lines=[OrderLine(sku="SKU-0001", quantity=1)],
        payment_method="tok_ok",
    )
    return Envelope.wrap(event, producer=producer)


async def listening(
    channel: aio_pika.abc.AbstractChannel, event_type: str
) -> aio_pika.abc.AbstractQueue:
    """An exclusive queue bound to the event's exchange: every event published from now on."""
    queue = await channel.declare_queue(exclusive=True)
    exchange = await channel.declare_exchange(
        exchange_name(event_type), aio_pika.ExchangeType.FANOUT, durable=True
    )
    await queue.bind(exchange)
    return queue


async def collected(
    queue: aio_pika.abc.AbstractQueue, count: int, correlation_id: str | None = None
) -> list[tuple[Envelope, Event]]:
    """The first `count` events taken from `queue` (of that correlation id, if one is given)."""
    got: list[tuple[Envelope, Event]] = []

    async def fetch() -> bool:
        message = await queue.get(fail=False, no_ack=True)
        if message is not None:
            envelope, event = codec.decode(message.body)
            if correlation_id is None or envelope.correlation_id == correlation_id:
                got.append((envelope, event))
        return len(got) >= count

    await eventually(fetch)
    return got


def noting(handled: list[str]) -> Callable[[Envelope, OrderPlaced], Awaitable[None]]:
    """An OrderPlaced handler that notes the order id of each event it handles in `handled`."""

    async def handler(envelope: Envelope, event: OrderPlaced) -> None:
        handled.append(event.order_id)

    return handler
