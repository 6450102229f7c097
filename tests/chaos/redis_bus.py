"""The chaos harness on Redis Streams (EVENT_BUS=redis): a bus Redis of the test's own (never
the cache's, never the shared bus Redis), with its AOF fsynced at every write, on a free port
and in its own directory; SIGKILLed by its PID and started again on the same port and
directory; and the harness's reads and writes on it (tests/chaos/buses.py).

SIGKILL, not a clean shutdown, is the fault: with `appendfsync always` Redis writes and fsyncs
the AOF before it sends the reply (infra.messaging.redisbus), so every XADD, XACK and retry
the services were told happened is in the file the restarted server loads; a command cut off
mid-write was never acknowledged, and `aof-load-truncated` (on by default) drops its tail.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from infra.devstack.redis_bus import BusRedisProcess
from infra.messaging.redisbus.fields import from_fields
from infra.messaging.redisbus.keys import Keys
from tests.chaos.buses import Letter, work_queue_events

# A killed consumer's deliveries are claimed by another after this (RabbitMQ requeues them when
# the connection closes): short, so that a kill costs seconds; the sweep that claims them runs
# every SWEEP_S.
VISIBILITY_TIMEOUT_S = 5.0
SWEEP_S = 1.0
# More than a chaos batch ever leaves in one stream: the depth of a group is exact below it.
MOST_ENTRIES = 100_000


@dataclass
class PrivateRedis(BusRedisProcess):
    kind: str = "redis"

    def env(self) -> dict[str, str]:
        return {
            "EVENT_BUS": "redis",
            "EVENT_BUS_URL": self.url,
            "EVENT_BUS_REDIS_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
            "EVENT_BUS_REDIS_SWEEP_INTERVAL_S": str(SWEEP_S),
        }

    def probe(self) -> RedisProbe:
        return RedisProbe(self.url)

    async def restart(self, outage_s: float) -> None:
        before = await self.run_id()
        await asyncio.to_thread(self.kill)
        try:
            await asyncio.sleep(outage_s)
        finally:
            await asyncio.to_thread(self.start)
        assert await self.run_id() != before, "the bus Redis was not restarted"

    async def run_id(self) -> str:
        """The server's id for this run of it: a restarted server has another."""
        async with bus_client(self.url) as client:
            return str((await client.info("server"))["run_id"])


@contextlib.asynccontextmanager
async def bus_client(url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
    try:
        yield client
    finally:
        await client.aclose()


async def group_depth(client: Redis, stream: str, group: str) -> int:
    """What `group` has not been given yet plus what it holds unacked."""
    for info in await client.xinfo_groups(stream):
        if info["name"].decode() == group:
            after = "(" + info["last-delivered-id"].decode()
            undelivered: Any = await client.xrange(stream, after, "+", count=MOST_ENTRIES)
            return len(undelivered) + int(info["pending"])
    raise LookupError(f"no group {group} on {stream}")


@dataclass
class RedisProbe:
    url: str
    keys: Keys = field(default_factory=Keys)

    async def queue_depths(self) -> dict[str, int]:
        """Per queue: its group on the event stream and on its retry stream (what it was not
        given yet and what it holds), and its schedule (retries waiting for their delay, as in
        a delay tier); per dead-letter stream, its entries."""
        depths = {}
        async with bus_client(self.url) as client:
            for queue, event_type in work_queue_events():
                depths[queue] = await group_depth(client, self.keys.events(event_type), queue)
                retries = self.keys.retries(queue)
                depths[retries] = await group_depth(client, retries, queue)
                schedule = self.keys.schedule(queue)
                depths[schedule] = await client.zcard(schedule)
                dead = self.keys.dead_letters(queue)
                depths[dead] = await client.xlen(dead)
        return depths

    async def letters(self, dlq: str, limit: int) -> list[Letter]:
        async with bus_client(self.url) as client:
            entries: Any = await client.xrange(self.keys.dead_letters(dlq.removesuffix(".dlq")),
                                               count=limit)  # fmt: skip
        letters = []
        for _, raw in entries:
            message = from_fields(raw)
            letters.append(Letter(message.message_id, message.type, dict(message.headers)))
        return letters

    async def publish_to_every_work_queue(self, messages: dict[str, bytes]) -> None:
        """XADD to each subscribed event type's stream, as a foreign producer would: every
        queue's group on it gets each one."""
        streams = {self.keys.events(event_type) for _, event_type in work_queue_events()}
        async with bus_client(self.url) as client:
            for stream in sorted(streams):
                for message_id, body in messages.items():
                    await client.xadd(stream, {"body": body, "message_id": message_id})
