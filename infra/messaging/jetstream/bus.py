"""One NATS connection per process, the streams it publishes to, and confirmed publishes.

A publish is a JetStream publish: it returns once the server stored the message and answered
with a PubAck (the outbox marks the event sent only then); no answer within PUBLISH_TIMEOUT_S,
an error answer or a lost connection is a PublishFailed, which the outbox retries. An event is
published with `Nats-Msg-Id` = its event id, so the outbox's second publish of one event (a
relay and a sweep racing, a confirm lost with the connection) is stored once within the
stream's duplicate window (NATS_DUPLICATE_WINDOW_S); past it, handlers are idempotent anyway.

The client reconnects by itself (without bound, every RECONNECT_WAIT_S); while it is away,
`is_connected` is False and publishes fail at once instead of waiting in the client's buffer.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from contracts.envelope import Envelope
from contracts.topology import exchange_name
from infra.messaging import codec
from infra.messaging.errors import PublishFailed, connected
from infra.messaging.hooks import Hooks, publishing
from infra.messaging.jetstream import wire
from infra.messaging.jetstream.names import Names
from infra.observability.message_hooks import NATS, default_hooks
from infra.settings import NatsSettings

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
RECONNECT_WAIT_S = 0.5
DAY_S = 86_400.0


class JetStreamBus:
    def __init__(
        self, url: str, service: str, settings: NatsSettings, hooks: Hooks | None = None
    ) -> None:
        """`url`: one NATS URL or several, comma-separated (the nodes of a cluster)."""
        self.hooks = default_hooks(NATS) if hooks is None else hooks
        self.service = service
        self.settings = settings
        self.names = Names(settings.prefix)
        self._servers = [u.strip() for u in url.split(",") if u.strip()]
        self._client: Client | None = None
        self._js: JetStreamContext | None = None

    async def connect(self) -> None:
        """Connect and declare the events and retries streams; raise to be retried."""
        client = await nats.connect(
            servers=self._servers,
            name=self.service,
            connect_timeout=CONNECT_TIMEOUT_S,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT_S,
            error_cb=_log_error,
        )
        try:
            self._js = client.jetstream(timeout=PUBLISH_TIMEOUT_S)
            self._client = client
            await self.declare_streams()
        except BaseException:
            await client.close()
            self._client = None
            raise

    async def declare_streams(self) -> None:
        names, settings = self.names, self.settings
        window = settings.duplicate_window_s
        await self.ensure_stream(
            StreamConfig(
                name=names.events_stream,
                subjects=[names.events_subjects],
                retention=RetentionPolicy.LIMITS,
                max_age=settings.max_age_days * DAY_S,
                storage=StorageType.FILE,
                duplicate_window=window,
            )
        )
        # Work-queue retention: a retry copy is gone once its one consumer acked it.
        await self.ensure_stream(
            StreamConfig(
                name=names.retries_stream,
                subjects=[names.retries_subjects],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=window,
            )
        )

    async def ensure_dead_letter_stream(self, queue: str) -> None:
        # No limits: a dead letter stays until an operator replays or purges it; new ones are
        # refused (a failed publish, the delivery stays) rather than old ones dropped.
        await self.ensure_stream(
            StreamConfig(
                name=self.names.dead_letter_stream(queue),
                subjects=[self.names.dead_letter_subject(queue)],
                retention=RetentionPolicy.LIMITS,
                discard=DiscardPolicy.NEW,
                storage=StorageType.FILE,
                duplicate_window=self.settings.duplicate_window_s,
            )
        )

    async def ensure_stream(self, config: StreamConfig) -> None:
        manager = self.js
        try:
            await manager.add_stream(config)
        except nats.js.errors.BadRequestError:
            # It exists with another configuration (a setting changed): bring it in line.
            await manager.update_stream(config)

    @property
    def client(self) -> Client:
        return connected(self._client, "JetStreamBus")

    @property
    def js(self) -> JetStreamContext:
        return connected(self._js, "JetStreamBus")

    @property
    def is_connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def close(self) -> None:
        if self._client is not None and not self._client.is_closed:
            await self._client.close()

    async def publish(self, envelope: Envelope, headers: dict[str, Any] | None = None) -> None:
        """Publish to the event's subject; return only once the server stored it."""
        event_type = envelope.event_type
        message = codec.encode(envelope, headers)
        exchange = exchange_name(event_type)
        properties = {
            wire.EVENT_ID: message.message_id,
            wire.EVENT_TYPE: event_type,
            wire.CORRELATION_ID: message.correlation_id,
        }
        await self.send(
            self.names.event_subject(event_type),
            message.body,
            dict(message.headers or {}),
            properties,
            msg_id=str(envelope.event_id),
            stream=self.names.events_stream,
            label=(exchange, ""),
        )

    async def send(
        self,
        subject: str,
        body: bytes,
        headers: dict[str, Any],
        properties: dict[str, str | None],
        *,
        msg_id: str,
        stream: str,
        label: tuple[str, str],
    ) -> None:
        """Publish to `subject` of `stream` (checked by the server) within the publish hooks;
        `label`: the (exchange, routing key) RabbitMQ would use, for metrics and traces."""
        event_type = properties.get(wire.EVENT_TYPE) or ""
        exchange, routing_key = label
        with publishing(
            self.hooks.publish, exchange, routing_key, event_type,
            properties.get(wire.EVENT_ID), properties.get(wire.CORRELATION_ID), headers,
        ) as outgoing:  # fmt: skip
            nats_headers = wire.encode(outgoing.headers, properties)
            nats_headers[wire.MSG_ID] = msg_id
            await self._confirmed(subject, body, nats_headers, stream, event_type)

    async def _confirmed(
        self, subject: str, body: bytes, headers: dict[str, str], stream: str, event_type: str
    ) -> None:
        if not self.is_connected:
            raise PublishFailed("not connected to NATS", event_type)
        try:
            await self.js.publish(
                subject, body, timeout=PUBLISH_TIMEOUT_S, stream=stream, headers=headers
            )
        except nats.js.errors.APIError as error:
            raise PublishFailed(f"refused: {error}", event_type, "nacked") from error
        except nats.js.errors.NoStreamResponseError as error:
            raise PublishFailed(f"no stream for {subject}", event_type, "returned") from error
        except (nats.errors.Error, TimeoutError, ConnectionError) as error:
            raise PublishFailed(f"no PubAck: {error!r}", event_type) from error


def now_ms() -> int:
    return int(time.time() * 1000)


async def _log_error(error: Exception) -> None:
    log.warning("NATS connection: %r", error)
