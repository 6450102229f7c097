"""The event bus on Redis Streams (`EVENT_BUS=redis`), with the promises RabbitMQ keeps.

Keys (infra.messaging.redisbus.keys; RabbitMQ's names, after an optional namespace):
- `events.<type>`: a stream per event type. Each subscribing queue (`<service>.<type>`,
  contracts.topology.queue_name) is a consumer group on it, created at the stream's end: the
  fanout. Each process of a service is one consumer of its groups.
- `<queue>.retry`: the queue's own retry stream, which its group alone reads beside the event
  stream. A stream is shared by every group, so a retry added back to `events.<type>` would
  reach every subscriber; here it reaches only the queue whose handler failed.
- `<queue>.retry.parked` + `<queue>.retry.due`: the durable schedule. A retry parks a copy of
  the entry (its story headers included) in the parked stream and its id in the sorted set,
  scored by the due time on the server's clock, in one script. A mover in every consumer
  process (one script, atomic, so replicas never move one twice) adds each due copy to
  `<queue>.retry` and drops it from the schedule. Delays are dispatch's: the same tiers, the
  same jittered variant the retry policy picked (infra.messaging.retry_policy).
- `<queue>.dlq`: the dead letters, a stream of copies carrying the same story fields as
  RabbitMQ's headers (infra.messaging.story). Never trimmed: the DLQ tool purges.

Fields of an entry (infra.messaging.redisbus.fields): `body` (the envelope JSON), `message_id`,
`type`, `correlation_id`, `exchange`, and each header as `h:<name>` = JSON (the story, the
attempt count, `traceparent`).

Publish (infra.messaging.redisbus.publisher): one script runs `XADD` on the event's stream, and
the publish is confirmed when it returns. It refuses, raising PublishFailed so the outbox keeps
the event, when the stream has no group (nobody subscribes yet: RabbitMQ's mandatory flag)
or holds `max_stream_length` entries (RabbitMQ's reject-publish overflow).

What a confirmed publish is worth depends on the server's AOF (Redis 7.0 has no WAITAOF; WAIT
counts replicas, not the disk). `connect` refuses a server without `appendonly yes` or with a
`maxmemory-policy` that evicts (an evicted stream is lost events), and logs the fsync policy:
- `appendfsync always`: the command is written and fsynced before the reply is sent, so an
  acknowledged event survives a Redis crash and a machine crash or power loss. The devstack's
  bus server runs this way (the safe default); the cost is an fsync per event-loop round,
  shared by every client's commands of that round.
- `appendfsync everysec`: the reply goes out once the command is written to the kernel, which
  fsyncs about once a second. An acknowledged event survives `kill -9` of Redis, but a machine
  crash or power loss loses what was acknowledged in the last ~1 s; if the disk stalls, Redis
  postpones the write itself by up to 2 s more, and then even a Redis crash loses up to ~2 s.
With `everysec` the outbox has marked those events sent: they are gone.

Consume (infra.messaging.redisbus.subscriber): XREADGROUP on the event stream and the retry
stream, at most `AMQP_PREFETCH` entries in hand per stream and `AMQP_MAX_IN_FLIGHT` handlers
per process. Each delivery goes through the runtime's Dispatch; the settlement
(infra.messaging.redisbus.settlement) parks a retry or adds a dead letter, confirmed, and
dispatch acks (`XACK`) only after that, or after the handler's effect is stored.

Crash redelivery (infra.messaging.redisbus.upkeep): a consumer touches the entries it holds
every sweep (`XCLAIM ... JUSTID`: idle time reset, delivery count kept), so only a dead or
stuck consumer's entries go idle. Every sweep, `XAUTOCLAIM` takes entries idle longer than the
visibility timeout (`EVENT_BUS_REDIS_VISIBILITY_TIMEOUT_S`), and `XPENDING` gives how often each
was delivered: past `AMQP_DELIVERY_LIMIT` (an entry that kills every consumer that takes it)
it is dead-lettered with reason `delivery limit` instead, like a quorum queue's delivery limit.

Trimming: each sweep trims the streams it reads with `XTRIM MINID ~` to the oldest entry some
group still needs (its oldest pending entry, else its last delivered one): never an entry a
group has not acked. So a stream is as long as its slowest group's backlog, and the publish
bound above caps that.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from infra.messaging.hooks import Hooks
from infra.messaging.redisbus.keys import Keys
from infra.messaging.redisbus.publisher import RedisPublisher
from infra.messaging.redisbus.subscriber import RedisSubscriber
from infra.observability.message_hooks import REDIS, default_hooks
from infra.settings import AmqpSettings, RedisBusSettings

__all__ = ["BusNotDurable", "Keys", "RedisTransport"]

log = logging.getLogger(__name__)


class BusNotDurable(ConnectionError):
    """The server would lose acknowledged events: no AOF, or keys may be evicted."""


class RedisTransport:
    def __init__(
        self,
        url: str,
        service: str,
        amqp: AmqpSettings,
        bus: RedisBusSettings,
        hooks: Hooks | None = None,
    ) -> None:
        hooks = default_hooks(REDIS) if hooks is None else hooks
        self.client = Redis.from_url(
            url,
            socket_connect_timeout=5,
            # Above the longest blocking read.
            socket_timeout=bus.block_ms / 1000 + 5,
            health_check_interval=30,
        )
        self.keys = Keys(bus.namespace)
        self.publisher = RedisPublisher(self.client, self.keys, hooks, bus.max_stream_length)
        self.subscriber = RedisSubscriber(
            self.client, self.publisher, self.keys, service, amqp, bus, hooks.consume
        )

    async def connect(self) -> None:
        await check_durable(self.client)
        await self.publisher.start()

    async def close(self) -> None:
        await self.subscriber.stop()
        await self.publisher.stop()
        await self.client.aclose()


async def check_durable(client: Redis) -> None:
    """Raise BusNotDurable unless the server keeps what it acknowledged (see above)."""
    try:
        config = await client.config_get("append*")
        config.update(await client.config_get("maxmemory*"))
    except ResponseError:  # CONFIG renamed or disabled (a managed Redis): the operator's word
        log.warning("cannot read the event bus Redis's CONFIG; make sure its AOF is on")
        return
    settings = {_text(k or ""): _text(v or "") for k, v in config.items()}
    if settings.get("appendonly") != "yes":
        raise BusNotDurable("the event bus Redis has no append-only file (appendonly yes)")
    policy = settings.get("maxmemory-policy", "noeviction")
    if policy != "noeviction" and settings.get("maxmemory", "0") != "0":
        raise BusNotDurable(f"the event bus Redis may evict keys (maxmemory-policy {policy})")
    log.info("event bus Redis: appendfsync %s", settings.get("appendfsync"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
