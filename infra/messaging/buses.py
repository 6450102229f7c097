"""The transport of a service process, chosen by `EVENT_BUS` (infra.messaging.transport)."""

from __future__ import annotations

from infra.messaging.broker import Broker
from infra.messaging.consumer import Consumer
from infra.messaging.transport import OneConnectionTransport, Transport
from infra.settings import RuntimeSettings


def rabbit_transport(settings: RuntimeSettings) -> OneConnectionTransport[Broker, Consumer]:
    """RabbitMQ: fanout exchanges, quorum queues, TTL delay tiers, a dead-letter exchange,
    publisher confirms (infra.messaging.broker, infra.messaging.consumer)."""
    amqp = settings.amqp
    broker = Broker(
        settings.event_bus.resolved_url(amqp),
        settings.service,
        heartbeat_s=amqp.heartbeat_s,
        reconnect_base_s=amqp.reconnect_base_s,
        reconnect_max_s=amqp.reconnect_max_s,
    )
    return OneConnectionTransport(broker, Consumer(broker, settings.service, amqp))


def create_transport(settings: RuntimeSettings) -> Transport:
    kind = settings.event_bus.kind
    if kind == "rabbitmq":
        return rabbit_transport(settings)
    if kind == "nats":
        # Imported here: nats-py is needed only by processes that run on NATS.
        from infra.messaging.jetstream.transport import nats_transport

        return nats_transport(settings)
    if kind == "redis":
        # Imported here: a RabbitMQ deployment never loads the Redis bus.
        from infra.messaging.redisbus import RedisTransport

        url = settings.event_bus.resolved_url(settings.amqp)
        return RedisTransport(url, settings.service, settings.amqp, settings.redis_bus)
    raise NotImplementedError(f"EVENT_BUS={kind} is not available in this build")
