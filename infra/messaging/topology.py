"""Declares the broker topology from the names in contracts.topology.

Every queue is a quorum queue (replicated, durable, at-least-once dead-lettering) with an
explicit initial group size (`AMQP_QUORUM_GROUP_SIZE`, default 3; a broker with fewer nodes
makes it as many as it has) and its leader placed by the `balanced` locator: RabbitMQ 3.10
otherwise leads every queue from the node that declared it, so one node carried all the
traffic and every leader moved at once when it died. Retry delay
tiers are per service: a fanout exchange and a TTL queue of one name. A retry is published to
the tier with its work queue's name as routing key; when the TTL ends the tier dead-letters it
to the service's direct exchange `<service>.retry.return`, where each work queue is bound under
its own name. So a service needs no access to the default exchange (which reaches any queue).
"""

from __future__ import annotations

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pamqp.common import FieldTable

from contracts.topology import (
    DEAD_LETTER_EXCHANGE,
    dead_letter_queue_name,
    exchange_name,
    queue_name,
    retry_return_exchange_name,
    retry_tier_name,
)
from infra.settings import AmqpSettings

# A dead letter is kept until its target queue confirms it; this needs reject-publish.
_AT_LEAST_ONCE_DEAD_LETTERING = {
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


def quorum_arguments(settings: AmqpSettings) -> FieldTable:
    """Arguments of every queue this runtime declares: type, membership and leader placement."""
    return {
        "x-queue-type": "quorum",
        "x-quorum-initial-group-size": settings.quorum_group_size,
        "x-queue-leader-locator": "balanced",
    }


async def declare_event_exchange(channel: AbstractChannel, event_type: str) -> AbstractExchange:
    return await channel.declare_exchange(
        exchange_name(event_type), ExchangeType.FANOUT, durable=True
    )


async def declare_dead_letter_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(DEAD_LETTER_EXCHANGE, ExchangeType.DIRECT, durable=True)


async def declare_subscription(
    channel: AbstractChannel, service: str, event_type: str, settings: AmqpSettings
) -> AbstractQueue:
    """Declare (idempotently) the work queue of `service` for `event_type` and its DLQ; bind it
    to the event's fanout exchange and to the service's retry return exchange. Returns the work
    queue. The retry tiers are the service's, shared by its queues: `declare_retry_tier`."""
    name = queue_name(service, event_type)
    dead_letters = await declare_dead_letter_exchange(channel)
    dlq = await channel.declare_queue(
        dead_letter_queue_name(name), durable=True, arguments=quorum_arguments(settings)
    )
    await dlq.bind(dead_letters, routing_key=name)
    work = await channel.declare_queue(
        name,
        durable=True,
        arguments={
            **quorum_arguments(settings),
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": name,
            **_AT_LEAST_ONCE_DEAD_LETTERING,
            "x-delivery-limit": settings.delivery_limit,
        },
    )
    await work.bind(await declare_event_exchange(channel, event_type))
    back_to_work = await channel.declare_exchange(
        retry_return_exchange_name(service), ExchangeType.DIRECT, durable=True
    )
    await work.bind(back_to_work, routing_key=name)
    return work


async def declare_retry_tier(
    channel: AbstractChannel, service: str, delay_ms: int, settings: AmqpSettings
) -> AbstractExchange:
    """Declare (idempotently) one delay tier of `service`; returns the exchange to publish
    retries to, with the work queue's name as routing key."""
    name = retry_tier_name(service, delay_ms)
    exchange = await channel.declare_exchange(name, ExchangeType.FANOUT, durable=True)
    tier = await channel.declare_queue(
        name,
        durable=True,
        arguments={
            # Quorum, not classic: a classic queue dead-letters at most once, so a message
            # whose delay ends while the work queue is unavailable (a broker restart) would
            # be dropped. The chaos tests caught exactly that.
            **quorum_arguments(settings),
            "x-message-ttl": delay_ms,
            # No dead-letter routing key: the message keeps the one it was published with,
            # its work queue's name, under which the work queue is bound to this exchange.
            "x-dead-letter-exchange": retry_return_exchange_name(service),
            **_AT_LEAST_ONCE_DEAD_LETTERING,
        },
    )
    await tier.bind(exchange)
    return exchange
