"""Publishing to the Redis Streams bus: `XADD` to the event type's stream, confirmed when the
server replies (see the package docstring for what the reply is worth on disk)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from contracts.envelope import Envelope
from infra.messaging import codec
from infra.messaging.errors import PublishFailed
from infra.messaging.hooks import Hooks, Inbound, publishing
from infra.messaging.redisbus.fields import to_fields, with_headers
from infra.messaging.redisbus.keys import Keys
from infra.messaging.redisbus.scripts import PUBLISH

log = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 10.0
HEALTH_INTERVAL_S = 1.0


class RedisPublisher:
    def __init__(self, client: Redis, keys: Keys, hooks: Hooks, max_stream_length: int) -> None:
        self._client = client
        self._keys = keys
        self._hooks = hooks
        self._max_length = max_stream_length
        self._publish = client.register_script(PUBLISH)
        self._connected = False
        self._watch: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        await self._client.ping()
        self._connected = True
        self._watch = asyncio.create_task(self._watch_server(), name="redis-bus-health")

    async def stop(self) -> None:
        self._closing.set()
        if self._watch is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._watch), HEALTH_INTERVAL_S + 5)
            self._watch.cancel()

    async def publish(self, envelope: Envelope, headers: dict[str, Any] | None = None) -> None:
        """XADD to the event's stream; return once the server took it."""
        inbound = codec.inbound_of(envelope, headers)
        key = self._keys.events(envelope.event_type)
        async with self.hooked(inbound, inbound.exchange, "", envelope.event_type) as outgoing:
            fields = to_fields(outgoing)
            flat = [item for pair in fields.items() for item in pair]
            await self.confirmed(self._publish(keys=[key], args=[self._max_length, *flat]), inbound)

    async def add(self, key: str, fields: dict[str, bytes | str], message: Inbound) -> None:
        """XADD `fields` to `key` (a dead-letter stream: never trimmed), confirmed."""
        await self.confirmed(self._client.xadd(key, fields), message)  # type: ignore[arg-type]

    async def confirmed(self, command: Any, message: Inbound) -> None:
        """Await `command` (an XADD or a script that adds); PublishFailed unless it ran."""
        event_type = message.type or ""
        try:
            await command
        except ResponseError as error:
            kind = "returned" if str(error).startswith("UNROUTABLE") else "nacked"
            raise PublishFailed(str(error), event_type, kind) from error
        except (RedisError, OSError, TimeoutError) as error:
            self._connected = False
            raise PublishFailed(f"no reply from the bus: {error!r}", event_type) from error
        self._connected = True

    @contextlib.asynccontextmanager
    async def hooked(
        self, message: Inbound, exchange: str, routing_key: str, event_type: str
    ) -> AsyncIterator[Inbound]:
        """The publish hooks around a bounded publish; yields `message` with the headers they
        added (a trace context)."""
        with publishing(
            self._hooks.publish, exchange, routing_key, event_type,
            message.message_id, message.correlation_id, message.headers,
        ) as outgoing:  # fmt: skip
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                    yield with_headers(message, outgoing.headers)
            except TimeoutError as error:
                self._connected = False
                reason = f"no reply within {PUBLISH_TIMEOUT_S:.0f} s"
                raise PublishFailed(reason, event_type) from error

    async def _watch_server(self) -> None:
        """Keeps `is_connected` true to the server, so a relay paused by an outage resumes."""
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEALTH_INTERVAL_S):
                    await self._closing.wait()
                    return
            try:
                await self._client.ping()
            except (RedisError, OSError, TimeoutError):
                if self._connected:
                    log.warning("the Redis event bus is unreachable")
                self._connected = False
            else:
                self._connected = True
