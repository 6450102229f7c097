"""Declares the broker topology from the names in contracts.topology.

Every queue is a quorum queue (replicated, durable, at-least-once dead-lettering). Retry delay
tiers hold messages for their TTL, then dead-letter them back to the work queue through the
default exchange.
"""

from __future__ import annotations

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from contracts.topology import (
    DEAD_LETTER_EXCHANGE,
    dead_letter_queue_name,
    exchange_name,
    queue_name,
    retry_queue_name,
)
from infra.settings import AmqpSettings


async def declare_event_exchange(channel: AbstractChannel, event_type: str) -> AbstractExchange:
    return await channel.declare_exchange(
        exchange_name(event_type), ExchangeType.FANOUT, durable=True
    )


async def declare_dead_letter_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(DEAD_LETTER_EXCHANGE, ExchangeType.DIRECT, durable=True)


async def declare_subscription(
    channel: AbstractChannel, service: str, event_type: str, settings: AmqpSettings
) -> AbstractQueue:
    """Declare (idempotently) the work queue of `service` for `event_type`, its DLQ and its
    retry tiers; bind it to the event's fanout exchange. Returns the work queue."""
    name = queue_name(service, event_type)
    dead_letters = await declare_dead_letter_exchange(channel)
    dlq = await channel.declare_queue(
        dead_letter_queue_name(name), durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dlq.bind(dead_letters, routing_key=name)
    work = await channel.declare_queue(
        name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": name,
            # A dead letter is kept until the DLQ confirms it; this needs reject-publish.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": settings.delivery_limit,
        },
    )
    await work.bind(await declare_event_exchange(channel, event_type))
    for delay_ms in settings.retry_delays_ms:
        await channel.declare_queue(
            retry_queue_name(name, delay_ms),
            durable=True,
            arguments={
                # Quorum, not classic: a classic queue dead-letters at most once, so a message
                # whose delay ends while the work queue is unavailable (a broker restart) would
                # be dropped. The chaos tests caught exactly that.
                "x-queue-type": "quorum",
                "x-message-ttl": delay_ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": name,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
    return work
