"""The event buses `bench micro --buses` compares, each behind the runtime's transport seam
(infra.messaging.transport), on ground of the run's own: RabbitMQ in the run's vhost, NATS
JetStream under a stream prefix of its own on the local server (its streams deleted after),
Redis Streams on a bus Redis the run starts (AOF on, its own dir, stopped after).

Each bus reads its settings back from the running server, so the figures print what was
measured, not what was asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import psutil
from redis.asyncio import Redis

from contracts.events import OrderPlaced, StockReservationFailed
from contracts.topology import queue_name
from infra.devstack import Management
from infra.devstack.redis_bus import BusRedisProcess
from infra.messaging.broker import Broker
from infra.messaging.consumer import Consumer
from infra.messaging.transport import OneConnectionTransport, Transport
from infra.settings import AmqpSettings, NatsSettings, RedisBusSettings

# A service whose queues keep the published events routable (RabbitMQ's mandatory flag, the
# Redis bus's "no group" refusal); never consumed, emptied between variants.
SINK = "bench-sink"
SINK_TYPES = (OrderPlaced, StockReservationFailed)
NATS_URL = "nats://127.0.0.1:4222"


class Bus(Protocol):
    name: str

    def transport(self, service: str, amqp: AmqpSettings) -> Transport: ...

    async def settings(self) -> str:
        """What the server runs with, read back from it."""
        ...

    async def clear(self) -> None:
        """Empty what the variants filled (the sink queues)."""
        ...

    def server_pid(self) -> int | None: ...

    async def close(self) -> None: ...


class RabbitBus:
    name = "rabbitmq"

    def __init__(self, url: str) -> None:
        self.url = url

    def transport(self, service: str, amqp: AmqpSettings) -> Transport:
        broker = Broker(self.url, service)
        return OneConnectionTransport(broker, Consumer(broker, service, amqp))

    async def settings(self) -> str:
        """The sink queue as the management API describes it."""
        vhost = quote(unquote(urlsplit(self.url).path.lstrip("/")) or "/", safe="")
        name = quote(queue_name(SINK, OrderPlaced.event_type), safe="")
        response = await asyncio.to_thread(
            Management.from_env().request, "GET", f"/queues/{vhost}/{name}"
        )
        queue = response.json()
        overview = await asyncio.to_thread(Management.from_env().request, "GET", "/overview")
        version = overview.json().get("rabbitmq_version")
        return (
            f"RabbitMQ {version}: queue type {queue.get('type')}, durable {queue.get('durable')},"
            " publisher confirms, persistent messages"
        )

    async def clear(self) -> None:
        connection = await aio_pika.connect(self.url)
        try:
            channel = await connection.channel()
            for event_type in SINK_TYPES:
                queue = await channel.get_queue(queue_name(SINK, event_type.event_type))
                await queue.purge()
        finally:
            await connection.close()

    def server_pid(self) -> int | None:
        return _pid_named("beam.smp")

    async def close(self) -> None:
        return None


class NatsBus:
    name = "nats"

    def __init__(self, url: str = NATS_URL) -> None:
        self.url = url
        self.nats = NatsSettings(prefix=f"bench-{uuid.uuid4().hex[:8]}")

    def transport(self, service: str, amqp: AmqpSettings) -> Transport:
        from infra.messaging.jetstream.bus import JetStreamBus
        from infra.messaging.jetstream.subscriber import JetStreamSubscriber

        bus = JetStreamBus(self.url, service, self.nats)
        return OneConnectionTransport(bus, JetStreamSubscriber(bus, service, amqp))

    async def _js(self) -> Any:
        import nats

        return await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=1)

    async def settings(self) -> str:
        from infra.messaging.jetstream.names import Names

        client = await self._js()
        try:
            info = await client.jetstream().stream_info(Names(self.nats.prefix).events_stream)
        finally:
            await client.close()
        config = info.config
        return (
            f"stream {config.name}: storage {config.storage}, retention {config.retention},"
            f" replicas {config.num_replicas}, duplicate window {config.duplicate_window} s"
        )

    async def clear(self) -> None:
        from infra.messaging.jetstream.names import Names

        client = await self._js()
        try:
            await client.jetstream().purge_stream(Names(self.nats.prefix).events_stream)
        finally:
            await client.close()

    def server_pid(self) -> int | None:
        return _pid_listening("nats-server", 4222)

    async def close(self) -> None:
        """Delete every stream of the run's prefix."""
        client = await self._js()
        try:
            js = client.jetstream()
            for info in await js.streams_info():
                if (info.config.name or "").startswith(f"{self.nats.prefix}_"):
                    await js.delete_stream(info.config.name)
        finally:
            await client.close()


class RedisBus:
    """A bus Redis of the run's own; `appendfsync` is switched between variants with
    CONFIG SET (the AOF stays on), so both policies run on the same server and data."""

    def __init__(self, appendfsync: str) -> None:
        self.appendfsync = appendfsync
        self.name = f"redis-{appendfsync}"
        self.server: RedisServer | None = None

    def transport(self, service: str, amqp: AmqpSettings) -> Transport:
        from infra.messaging.redisbus import RedisTransport

        assert self.server is not None
        return RedisTransport(self.server.url, service, amqp, self.server.bus)

    async def use(self, server: RedisServer) -> None:
        self.server = server
        async with server.client() as client:
            await client.config_set("appendfsync", self.appendfsync)

    async def settings(self) -> str:
        assert self.server is not None
        async with self.server.client() as client:
            config = await client.config_get("append*")
            config.update(await client.config_get("maxmemory-policy"))
            version = (await client.info("server"))["redis_version"]
        return (
            f"Redis {version} :{self.server.port}: appendonly {config['appendonly']},"
            f" appendfsync {config['appendfsync']}, maxmemory-policy"
            f" {config['maxmemory-policy']}"
        )

    async def clear(self) -> None:
        assert self.server is not None
        async with self.server.client() as client:
            async for key in client.scan_iter(match="events.*", _type="stream"):
                await client.xtrim(key, maxlen=0, approximate=False)

    def server_pid(self) -> int | None:
        process = None if self.server is None else self.server.process
        return None if process is None else process.pid

    async def close(self) -> None:
        return None


@dataclass
class RedisServer(BusRedisProcess):
    """The run's bus Redis (the devstack's foreground one: AOF, no eviction, a free port),
    with the runtime's bus settings and a client."""

    bus: RedisBusSettings = field(default_factory=RedisBusSettings)

    @contextlib.asynccontextmanager
    async def client(self) -> Any:
        client = Redis.from_url(self.url)
        try:
            yield client
        finally:
            await client.aclose()


def _pid_named(name: str) -> int | None:
    for process in psutil.process_iter(["name"]):
        if (process.info.get("name") or "").startswith(name):
            return process.pid
    return None


def _pid_listening(name: str, port: int) -> int | None:
    for process in psutil.process_iter(["name"]):
        if not (process.info.get("name") or "").startswith(name):
            continue
        with contextlib.suppress(psutil.Error):
            if any(c.laddr.port == port for c in process.net_connections("tcp")):
                return process.pid
    return None
