"""One robust connection per process, one confirming channel for publishes.

`connect_robust` reconnects with backoff and restores channels, declared exchanges and queues
and consumers; publishes made while the connection is down fail loudly (PublishFailed), and the
outbox relay retries them.

Every publish is a PRODUCER span whose W3C `traceparent` goes into the message headers, so the
consumer's span continues the same trace.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection
from opentelemetry.trace import SpanKind

from contracts.envelope import Envelope
from infra.messaging import codec
from infra.messaging.errors import PublishFailed
from infra.messaging.topology import declare_event_exchange
from infra.observability import tracing
from infra.observability.metrics import MESSAGES_PUBLISHED, PUBLISH_FAILURES, event_type_label

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0


class Broker:
    def __init__(self, url: str, service: str) -> None:
        self._url = url
        self.service = service
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._declare_lock = asyncio.Lock()

    async def connect(self, timeout_s: float = 30.0) -> None:
        self._connection = await asyncio.wait_for(
            aio_pika.connect_robust(self._url, client_properties={"connection_name": self.service}),
            timeout_s,
        )
        self._channel = await self.new_channel(publisher_confirms=True)

    async def new_channel(self, *, publisher_confirms: bool = False) -> AbstractRobustChannel:
        channel = await self.connection.channel(
            publisher_confirms=publisher_confirms, on_return_raises=publisher_confirms
        )
        assert isinstance(channel, aio_pika.RobustChannel)
        return channel

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("Broker.connect() was not called")
        return self._connection

    @property
    def channel(self) -> AbstractRobustChannel:
        if self._channel is None:
            raise RuntimeError("Broker.connect() was not called")
        return self._channel

    @property
    def is_connected(self) -> bool:
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._connection.connected.is_set()
        )

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def publish(self, envelope: Envelope, headers: dict[str, Any] | None = None) -> None:
        """Publish to the event's fanout exchange; return only once the broker confirmed it."""
        exchange = await self._event_exchange(envelope.event_type)
        await self._publish(exchange, codec.encode(envelope, headers), "", envelope.event_type)

    async def send(
        self, message: aio_pika.Message, exchange: str, routing_key: str, event_type: str
    ) -> None:
        """Publish to a named, already declared exchange (dead letters, retry tiers)."""
        target = await self.channel.get_exchange(exchange, ensure=False)
        await self._publish(target, message, routing_key, event_type)

    async def _event_exchange(self, event_type: str) -> AbstractExchange:
        exchange = self._exchanges.get(event_type)
        if exchange is None:
            async with self._declare_lock:
                exchange = self._exchanges.get(event_type)
                if exchange is None:
                    exchange = await declare_event_exchange(self.channel, event_type)
                    self._exchanges[event_type] = exchange
        return exchange

    async def _publish(
        self,
        exchange: AbstractExchange,
        message: aio_pika.Message,
        routing_key: str,
        event_type: str,
    ) -> None:
        if not tracing.recording():
            # No span of its own (nothing would record it, and it costs about a tenth of a
            # publish): the message carries the current context, or keeps the one it has.
            if tracing.has_span():
                _carry_current_trace(message)
            await self._confirmed(exchange, message, routing_key, event_type)
            return
        attributes = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.destination.name": exchange.name or routing_key,
            "messaging.rabbitmq.destination.routing_key": routing_key,
            "messaging.message.id": message.message_id or "",
            "messaging.message.conversation_id": message.correlation_id or "",
            "event.type": event_type,
        }
        with tracing.start_span(
            f"publish {event_type}",
            SpanKind.PRODUCER,
            parent=tracing.publish_parent(message.headers),
            attributes=attributes,
        ):
            # A copy (retry, dead letter) carries its original's traceparent; this publish
            # replaces it, so the next consume is a child of this span, in the same trace.
            _carry_current_trace(message)
            await self._confirmed(exchange, message, routing_key, event_type)

    async def _confirmed(
        self,
        exchange: AbstractExchange,
        message: aio_pika.Message,
        routing_key: str,
        event_type: str,
    ) -> None:
        try:
            await exchange.publish(message, routing_key, mandatory=True, timeout=PUBLISH_TIMEOUT_S)
        except aiormq.exceptions.PublishError as error:
            PUBLISH_FAILURES.labels(event_type_label(event_type), "returned").inc()
            raise PublishFailed(
                f"unroutable: exchange {exchange.name!r} key {routing_key!r}", event_type
            ) from error
        except aiormq.exceptions.DeliveryError as error:
            PUBLISH_FAILURES.labels(event_type_label(event_type), "nacked").inc()
            raise PublishFailed(f"broker refused the message: {error}", event_type) from error
        except (
            TimeoutError,
            aiormq.exceptions.AMQPError,
            # Raised (not an AMQPError) while a robust channel is closed and reopening.
            aiormq.exceptions.ChannelInvalidStateError,
            ConnectionError,
        ) as error:
            PUBLISH_FAILURES.labels(event_type_label(event_type), "connection").inc()
            raise PublishFailed(f"no confirm: {error!r}", event_type) from error
        MESSAGES_PUBLISHED.labels(event_type_label(event_type)).inc()


def _carry_current_trace(message: aio_pika.Message) -> None:
    """Put the current trace context in the message's headers, over any it carried."""
    headers = dict(message.headers or {})
    tracing.inject(headers)
    message.headers = headers
