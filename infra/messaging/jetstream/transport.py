"""The JetStream transport of a service process (infra.messaging.transport)."""

from __future__ import annotations

from infra.messaging.hooks import Hooks
from infra.messaging.jetstream.bus import JetStreamBus
from infra.messaging.jetstream.subscriber import JetStreamSubscriber
from infra.messaging.transport import OneConnectionTransport
from infra.settings import RuntimeSettings


def nats_transport(
    settings: RuntimeSettings, hooks: Hooks | None = None
) -> OneConnectionTransport[JetStreamBus, JetStreamSubscriber]:
    """NATS JetStream: an events stream, durable pull consumers per queue, retry copies with
    a due time, a dead-letter stream per queue, PubAck-confirmed publishes."""
    bus = JetStreamBus(
        settings.event_bus.resolved_url(settings.amqp), settings.service, settings.nats, hooks
    )
    return OneConnectionTransport(bus, JetStreamSubscriber(bus, settings.service, settings.amqp))
