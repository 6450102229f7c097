"""The clients one service process holds, opened and closed in order.

Opening waits (bounded) for the servers, so a service started alongside its broker or database
comes up when they do instead of crash-looping. Closing stops consuming first, lets in-flight
handlers finish, flushes the outbox relay, then closes the connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from contracts.events import Event
from infra.messaging.buses import create_transport
from infra.messaging.dispatch import Handler
from infra.messaging.outbox import OutboxRelay
from infra.messaging.transport import Transport
from infra.observability.metrics import MONGO_CLIENT
from infra.persistence.mongo import Document, client_settings, create_mongo_client, mongo_ping
from infra.persistence.redis import create_redis, redis_ping
from infra.readiness import Readiness
from infra.settings import RuntimeSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
STARTUP_WAIT_S = 60.0
RedisUse = Literal["required", "optional", "unused"]


@dataclass
class Runtime:
    settings: RuntimeSettings
    transport: Transport
    mongo: AsyncMongoClient[Document]
    redis: Redis
    relays: dict[str, OutboxRelay] = field(default_factory=dict)
    queues: list[str] = field(default_factory=list)
    redis_use: RedisUse = "required"

    @property
    def db(self) -> AsyncDatabase[Document]:
        return self.mongo[self.settings.mongo.database]

    async def consume(
        self, event_type: type[Event], handler: Handler, retry_delays_ms: list[int] | None = None
    ) -> None:
        """Subscribe `handler`, retrying (bounded, like the start) what the bus refuses for a
        moment: RabbitMQ answered 541 to a replica consuming a quorum queue that its sibling
        was declaring on a freshly booted node, which used to end the process at start. A
        ValueError (a subscription the contracts do not have) is never retried."""
        subscriber = self.transport.subscriber

        async def subscribe() -> None:
            self.queues.append(await subscriber.subscribe(event_type, handler, retry_delays_ms))

        await _wait_for(f"a consumer of {event_type.event_type}", subscribe, (ValueError,))

    async def stop_consuming(self) -> None:
        """Stop taking deliveries and let the handlers in flight finish (bounded)."""
        await self.transport.subscriber.stop()

    async def readiness(self) -> Readiness:
        """MongoDB always blocks; Redis blocks only where it is required and is not checked
        where it is unused; the broker never blocks (see infra.readiness)."""
        checks = {
            "broker": self.transport.publisher.is_connected,
            "mongodb": await mongo_ping(self.mongo),
        }
        if self.redis_use != "unused":
            checks["redis"] = await redis_ping(self.redis)
        required = {"mongodb", "redis"} if self.redis_use == "required" else {"mongodb"}
        return Readiness(checks, frozenset(required))


@asynccontextmanager
async def open_runtime(
    settings: RuntimeSettings,
    outbox_collections: tuple[str, ...] = (),
    redis_use: RedisUse = "required",
) -> AsyncIterator[Runtime]:
    """`outbox_collections`: the collections whose documents carry an outbox; each gets a
    relay (`runtime.relays[name]`). `redis_use`: "required" (start waits for it, /ready
    needs it), "optional" (a cache with a fallback: start does not wait, /ready reports it
    as degraded) or "unused" (never contacted)."""
    mongo = create_mongo_client(settings.mongo, settings.service)
    MONGO_CLIENT.info(client_settings(mongo))
    redis = create_redis(settings.redis)
    transport = create_transport(settings)
    try:
        await _wait_for("MongoDB", lambda: _require(mongo_ping(mongo)))
        if redis_use == "required":
            await _wait_for("Redis", lambda: _require(redis_ping(redis)))
        await _wait_for(f"the event bus ({settings.event_bus.kind})", transport.connect)
        runtime = Runtime(settings, transport, mongo, redis, redis_use=redis_use)
        publisher = transport.publisher
        for name in outbox_collections:
            runtime.relays[name] = OutboxRelay(publisher, runtime.db[name], settings.outbox)
            await runtime.relays[name].start()
        yield runtime
        await runtime.stop_consuming()
        for relay in runtime.relays.values():
            await relay.stop()
    finally:
        await transport.close()
        await redis.aclose()
        await mongo.close()


async def _require(check: Awaitable[bool]) -> None:
    if not await check:
        raise ConnectionError("not reachable")


async def _wait_for(
    what: str,
    attempt: Callable[[], Awaitable[Any]],
    permanent: tuple[type[Exception], ...] = (),
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_WAIT_S
    delay = 0.25
    while True:
        try:
            await attempt()
            return
        except permanent:
            raise
        except Exception as error:
            if loop.time() + delay > deadline:
                raise ConnectionError(f"{what} unreachable after {STARTUP_WAIT_S:.0f} s") from error
            log.warning("waiting for %s: %s", what, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
