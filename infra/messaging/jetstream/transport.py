"""The JetStream transport of a service process (infra.messaging.transport)."""

from __future__ import annotations

from infra.messaging.hooks import Hooks
from infra.messaging.jetstream.bus import JetStreamBus
from infra.messaging.jetstream.subscriber import JetStreamSubscriber
from infra.settings import RuntimeSettings


class NatsTransport:
    """NATS JetStream: an events stream, durable pull consumers per queue, retry copies with
    a due time, a dead-letter stream per queue, PubAck-confirmed publishes."""

    def __init__(self, settings: RuntimeSettings, hooks: Hooks | None = None) -> None:
        url = settings.event_bus.resolved_url(settings.amqp)
        self.bus = JetStreamBus(url, settings.service, settings.nats, hooks)
        self.consumer = JetStreamSubscriber(self.bus, settings.service, settings.amqp)

    @property
    def publisher(self) -> JetStreamBus:
        return self.bus

    @property
    def subscriber(self) -> JetStreamSubscriber:
        return self.consumer

    async def connect(self) -> None:
        await self.bus.connect()

    async def close(self) -> None:
        await self.bus.close()
