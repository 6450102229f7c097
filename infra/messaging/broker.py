"""One robust connection per process, one confirming channel for publishes.

The connection (infra.messaging.failover) is aio-pika's robust connection, which restores
channels, declared exchanges and queues and consumers after a reconnect, made to move on to
the next node of `AMQP_URL` (a comma-separated list) at each attempt, with a bounded backoff.
Publishes made while the connection is down, and confirms still awaited when it was lost,
fail loudly (PublishFailed), and the outbox relay retries them.

Every publish runs inside the publish hooks (infra.messaging.hooks; by default tracing, which
puts the W3C `traceparent` into the message headers so the consumer's span continues the same
trace, and metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, NoReturn

import aio_pika
import aiormq
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection

from contracts.envelope import Envelope
from contracts.topology import exchange_name
from infra.messaging import codec
from infra.messaging.errors import PublishFailed, connected
from infra.messaging.failover import FailoverConnection, Rotation, parse_amqp_urls, with_heartbeat
from infra.messaging.hooks import Hooks, publishing
from infra.messaging.publish_errors import CHANNEL_ERRORS, Remedy, not_confirmed
from infra.messaging.topology import declare_event_exchange
from infra.observability.message_hooks import RABBITMQ, default_hooks

log = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 10.0
REPLACE_TIMEOUT_S = 5.0


class Broker:
    def __init__(
        self,
        url: str,
        service: str,
        *,
        heartbeat_s: int = 3,
        reconnect_base_s: float = 0.5,
        reconnect_max_s: float = 5.0,
        attempt_timeout_s: float = 5.0,
        hooks: Hooks | None = None,
    ) -> None:
        """`url`: one AMQP URL or several, comma-separated (the nodes of a cluster).
        `hooks`: around every publish (and, for consumers on this broker, every delivery);
        None: the default ones."""
        self.hooks = default_hooks(RABBITMQ) if hooks is None else hooks
        self._urls = [with_heartbeat(u, heartbeat_s) for u in parse_amqp_urls(url)]
        self._reconnect = (reconnect_base_s, reconnect_max_s)
        # Bounds each attempt, so a node that accepts TCP but never answers (frozen) is
        # left for the next one instead of holding the connection factory.
        self._attempt_timeout_s = attempt_timeout_s
        self.service = service
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        # Event exchanges this process declared once; a replacement channel only looks them
        # up: a declare is a cluster-wide transaction, which waits while a node is frozen.
        self._declared: set[str] = set()
        self._declare_lock = asyncio.Lock()

    async def connect(self, timeout_s: float = 30.0) -> None:
        """Connect to the first node that answers (trying each in turn, within `timeout_s`)."""
        base_s, max_s = self._reconnect
        connection = FailoverConnection(
            Rotation(list(self._urls), base_s=base_s, max_s=max_s),
            client_properties={"connection_name": self.service},
            # Keep trying the other nodes instead of failing on the first refused one.
            fail_fast=False,
        )
        try:
            await asyncio.wait_for(connection.connect(timeout=self._attempt_timeout_s), timeout_s)
        except BaseException:
            await connection.close()  # stops its reconnect task
            raise
        self._connection = connection
        self._channel = await self.new_channel(publisher_confirms=True)

    async def _replace_channel(self, failed: object) -> None:
        """Give publishes a new channel in place of `failed` (if it is still the current one).
        On RabbitMQ 3.10 a channel that published to a quorum queue whose leader node died
        nacks every later publish, even once a new leader is elected (seen on the local
        3-node cluster); a new channel finds the new leader at once. The outbox retries what
        failed."""
        async with self._declare_lock:
            old = self._channel
            if old is None or old is not failed:
                return  # another publish replaced it already
            try:
                self._channel = await self.new_channel(publisher_confirms=True)
            except Exception:  # the connection is down: its restore reopens the old one
                return
            except asyncio.CancelledError:
                if _being_cancelled():
                    raise
                return  # the connection died under the open, and aiormq cancelled its RPC
            self._exchanges.clear()
        log.warning("publish failed: publishing on a new channel")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(REPLACE_TIMEOUT_S):
                await old.close()

    async def _replace_stuck(self, failed: object) -> None:
        """No confirm in time on a live connection: a new channel. A channel that published
        to a quorum queue whose leader froze keeps waiting on that leader, even once another
        member leads (cluster tests: confirms came only when the node thawed, 30 s later)."""
        if self.is_connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REPLACE_TIMEOUT_S):
                    await self._replace_channel(failed)

    async def _replace_if_closed(self) -> None:
        """The publishing channel closed under a live connection (an RPC timed out, the broker
        closed it): nothing reopens it, and every later publish would fail the same way."""
        channel = self._channel
        if channel is not None and channel.is_closed and self.is_connected:
            await self._replace_channel(channel)

    @property
    def connected_url(self) -> str | None:
        """The node this process is connected to now (password hidden), if any."""
        if not self.is_connected:
            return None
        url = self.connection.url  # type: ignore[attr-defined]
        return str(url.with_password("***") if url.password else url)

    async def new_channel(self, *, publisher_confirms: bool = False) -> AbstractRobustChannel:
        channel = await self.connection.channel(
            publisher_confirms=publisher_confirms, on_return_raises=publisher_confirms
        )
        assert isinstance(channel, aio_pika.RobustChannel)
        return channel

    @property
    def connection(self) -> AbstractRobustConnection:
        return connected(self._connection, "Broker")

    @property
    def channel(self) -> AbstractRobustChannel:
        return connected(self._channel, "Broker")

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
        event_type = envelope.event_type
        properties = codec.amqp_properties(envelope, headers)
        with publishing(
            self.hooks.publish, exchange_name(event_type), "", event_type,
            properties.message_id, properties.correlation_id, properties.headers,
        ) as outgoing:  # fmt: skip
            properties.headers = outgoing.headers
            body = envelope.model_dump_json().encode()
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_S):  # see _timed_out
                    exchange = self._exchanges.get(event_type)
                    if exchange is None:
                        exchange = await self._exchange_or_fail(event_type)
                    # What aio-pika's Exchange.publish does, without building an
                    # aio_pika.Message, and awaited here rather than in a helper coroutine:
                    # this runs for every message. `wait=False`: the confirm awaited below
                    # implies the write; waiting for the write too (aiormq's default) holds
                    # the channel's lock until the connection's writer task has run, so
                    # concurrent publishes queued on that lock, one wake-up each.
                    channel = self.channel
                    try:
                        if channel.is_closed:
                            raise aiormq.exceptions.ChannelInvalidStateError("channel closed")
                        underlay = await channel.get_underlay_channel()
                        assert isinstance(underlay, aiormq.Channel)  # `wait` is not in its ABC
                        await underlay.basic_publish(
                            body,
                            exchange=exchange.name,
                            properties=properties,
                            mandatory=True,
                            wait=False,
                        )
                    except BaseException as error:
                        await self._raise_not_confirmed(
                            error, channel, exchange.name, "", event_type
                        )
            except TimeoutError as error:
                raise await self._timed_out(event_type) from error

    async def send(
        self, message: aio_pika.Message, exchange: str, routing_key: str, event_type: str
    ) -> None:
        """Publish to a named, already declared exchange (dead letters, retry tiers)."""
        with publishing(
            self.hooks.publish, exchange, routing_key, event_type,
            message.message_id, message.correlation_id, message.headers,
        ) as outgoing:  # fmt: skip
            message.headers = outgoing.headers
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_S):  # see _timed_out
                    channel = self.channel
                    target = await channel.get_exchange(exchange, ensure=False)
                    try:
                        await target.publish(message, routing_key, mandatory=True)
                    except BaseException as error:
                        await self._raise_not_confirmed(
                            error, channel, exchange, routing_key, event_type
                        )
            except TimeoutError as error:
                raise await self._timed_out(event_type) from error

    async def _exchange_or_fail(self, event_type: str) -> AbstractExchange:
        try:
            return await self._event_exchange(event_type)
        except CHANNEL_ERRORS as error:
            await self._replace_if_closed()
            raise PublishFailed(f"no exchange: {error!r}", event_type) from error

    async def _timed_out(self, event_type: str) -> PublishFailed:
        """A publish (its exchange, its write, its confirm) is bounded by PUBLISH_TIMEOUT_S,
        its only timer. A robust channel waits, unbounded, for its connection to come back
        before it even writes; a publish caught by the loss of a frozen node hung the outbox
        relay for good (cluster tests). Past the bound it is a PublishFailed like any other,
        which the outbox retries, and the next publishes go out on a new channel."""
        await self._replace_stuck(self._channel)
        return PublishFailed(f"no confirm within {PUBLISH_TIMEOUT_S:.0f} s", event_type)

    async def _event_exchange(self, event_type: str) -> AbstractExchange:
        exchange = self._exchanges.get(event_type)
        if exchange is None:
            async with self._declare_lock:
                exchange = self._exchanges.get(event_type)
                if exchange is None:
                    exchange = await self._exchange_on_channel(event_type)
                    self._exchanges[event_type] = exchange
        return exchange

    async def _exchange_on_channel(self, event_type: str) -> AbstractExchange:
        channel = self.channel
        if channel.is_closed:
            # Closed by this broker, its replacement not open yet: no restore reopens it,
            # and a declare on it would wait for that restore until the publish timed out.
            raise aiormq.exceptions.ChannelInvalidStateError("channel closed")
        if event_type in self._declared:
            return await channel.get_exchange(exchange_name(event_type), ensure=False)
        exchange = await declare_event_exchange(channel, event_type)
        self._declared.add(event_type)
        return exchange

    async def _raise_not_confirmed(
        self,
        error: BaseException,
        channel: AbstractRobustChannel,
        exchange: str,
        routing_key: str,
        event_type: str,
    ) -> NoReturn:
        """A publish to `exchange` on `channel` raised `error`: raise a PublishFailed saying
        why, once the channel is replaced if it is the cause; `error` itself if it is not a
        publish failure. (The publish has no timeout of its own: its caller bounds it.)"""
        failure = not_confirmed(error, exchange, routing_key, being_cancelled=_being_cancelled())
        if failure is None:
            raise error
        match failure.remedy:
            case Remedy.REPLACE_CHANNEL:
                await self._replace_channel(channel)
            case Remedy.REPLACE_IF_CLOSED:
                await self._replace_if_closed()
            case Remedy.REPLACE_STUCK:
                await self._replace_stuck(channel)
            case Remedy.NONE:
                pass
        raise PublishFailed(failure.reason, event_type, failure.kind) from error


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
