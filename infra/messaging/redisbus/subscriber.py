"""Consuming the Redis Streams bus: a consumer group per queue on its event type's stream and
on its own retry stream, read with XREADGROUP (at most `prefetch` entries in hand per stream,
at most `max_in_flight` handlers in the process), each delivery settled by the runtime's
dispatch and acked (XACK) only after that; a sweep that keeps held deliveries fresh, claims
crashed consumers' deliveries (dead-lettering one delivered more than `delivery_limit` times),
trims the streams; a mover that brings due retries back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from contracts.events import Event
from contracts.topology import SUBSCRIPTIONS, jittered_delays, queue_name
from infra.messaging import story
from infra.messaging.dispatch import Dispatch, Handler, Subscription
from infra.messaging.errors import PublishFailed
from infra.messaging.hooks import ConsumeHook
from infra.messaging.redisbus import upkeep
from infra.messaging.redisbus.fields import from_fields
from infra.messaging.redisbus.keys import Keys
from infra.messaging.redisbus.publisher import RedisPublisher
from infra.messaging.redisbus.scripts import MOVE_DUE, PARK
from infra.messaging.redisbus.settlement import GroupLink, StreamSettlement
from infra.settings import AmqpSettings, RedisBusSettings

log = logging.getLogger(__name__)
DELIVERY_LIMIT_REASON = "delivery limit"
MOVE_BATCH = 100
MOVER_MAX_SLEEP_S = 0.5
ERROR_PAUSE_S = 0.5


class DeliveryLimitExceeded(Exception):
    """Delivered more often than the limit without being settled: its consumer dies on it."""


@dataclass
class _Queue:
    subscription: Subscription
    link: GroupLink
    streams: tuple[str, str]  # the event type's stream, the queue's retry stream
    in_hand: dict[tuple[str, bytes], asyncio.Task[None]] = field(default_factory=dict)
    room: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None


class RedisSubscriber:
    def __init__(
        self,
        client: Redis,
        publisher: RedisPublisher,
        keys: Keys,
        service: str,
        amqp: AmqpSettings,
        bus: RedisBusSettings,
        hooks: Sequence[ConsumeHook],
    ) -> None:
        self._client, self._publisher, self._keys = client, publisher, keys
        self._service, self._amqp, self._bus = service, amqp, bus
        self._dispatch = Dispatch(service, tuple(hooks))
        self.consumer = f"{service}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._queues: list[_Queue] = []
        self._limit = asyncio.Semaphore(amqp.max_in_flight)
        self._park = client.register_script(PARK)
        self._move = client.register_script(MOVE_DUE)
        self._stopping = asyncio.Event()  # no more reads
        self._closing = asyncio.Event()  # no more upkeep either
        self._parked = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []

    async def subscribe(
        self, event_type: type[Event], handler: Handler, retry_delays_ms: list[int] | None = None
    ) -> str:
        """Create `service`'s group for `event_type` (at the stream's end, like a new queue)
        and its retry stream's, and start reading both."""
        subscribed = SUBSCRIPTIONS.get(self._service)
        if subscribed is not None and event_type not in subscribed:
            raise ValueError(f"{self._service} does not subscribe to {event_type.event_type}")
        queue = queue_name(self._service, event_type.event_type)
        streams = (self._keys.events(event_type.event_type), self._keys.retries(queue))
        await self._create_group(streams[0], queue, "$")
        await self._create_group(streams[1], queue, "0")
        delays = self._amqp.retry_delays_ms if retry_delays_ms is None else retry_delays_ms
        tiers = tuple(jittered_delays(d, self._amqp.retry_jitter) for d in delays)
        visibility_ms = int(self._bus.visibility_timeout_s * 1000)
        link = GroupLink(
            self._client,
            self._publisher,
            self._keys,
            self._service,
            queue,
            self.consumer,
            visibility_ms,
            self._park,
            self._parked.set,
        )
        entry = _Queue(Subscription(queue, event_type.event_type, handler, tiers), link, streams)
        entry.reader = asyncio.create_task(self._read(entry), name=f"read {queue}")
        self._queues.append(entry)
        if not self._background:
            self._background = [
                asyncio.create_task(self._sweep(), name="redis-bus sweep"),
                asyncio.create_task(self._move_due(), name="redis-bus retries"),
            ]
        return queue

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop reading (each read returns within `block_ms`), let the deliveries in hand
        finish (bounded), then stop the sweep and the mover."""
        self._stopping.set()
        readers = [q.reader for q in self._queues if q.reader is not None]
        if readers:
            await asyncio.wait(readers, timeout=self._bus.block_ms / 1000 + 5)
        in_flight = [t for q in self._queues for t in q.in_hand.values()]
        if in_flight:
            await asyncio.wait(in_flight, timeout=timeout_s)
        # The loops end by themselves once told: a cancellation can be swallowed on its way
        # through a client library, and a loop that missed it would never stop.
        self._closing.set()
        tasks = [*readers, *self._background]
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=self._bus.block_ms / 1000 + 5)
            for task in stuck:
                task.cancel()
        self._background = []

    async def _create_group(self, stream: str, group: str, start: str) -> None:
        try:
            await self._client.xgroup_create(stream, group, id=start, mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _read(self, queue: _Queue) -> None:
        prefetch = self._amqp.prefetch
        while not self._stopping.is_set():
            free = prefetch - len(queue.in_hand)
            if free <= 0:
                queue.room.clear()
                await _wait(queue.room, self._bus.block_ms / 1000)
                continue
            try:
                reply: Any = await self._client.xreadgroup(
                    queue.link.queue,
                    self.consumer,
                    dict.fromkeys(queue.streams, ">"),
                    count=free,
                    block=self._bus.block_ms,
                )
            except Exception as error:  # the server is away: read again once it is back
                log.warning("reading %s failed: %r", queue.link.queue, error)
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            for stream, entries in reply or []:
                for entry_id, fields in entries:
                    self._start(queue, stream.decode(), entry_id, fields)

    def _start(
        self, queue: _Queue, stream: str, entry_id: bytes, fields: dict[bytes, bytes]
    ) -> None:
        key = (stream, entry_id)
        if key in queue.in_hand:
            return  # claimed back while still in hand: the handler is on it already
        task = asyncio.create_task(self._deliver(queue, stream, entry_id, fields))
        queue.in_hand[key] = task

        def done(_: asyncio.Task[None]) -> None:
            queue.in_hand.pop(key, None)
            queue.room.set()

        task.add_done_callback(done)

    async def _deliver(
        self, queue: _Queue, stream: str, entry_id: bytes, fields: dict[bytes, bytes]
    ) -> None:
        message = from_fields(fields)
        async with self._limit:
            settlement = StreamSettlement(queue.link, stream, entry_id, message)
            try:
                await self._dispatch(queue.subscription, message, settlement)
            except Exception:  # dispatch settles everything; a bug here leaves it pending
                log.exception("dispatch of %s failed; left pending", message.message_id)

    async def _sweep(self) -> None:
        sweeps = 0
        while not self._closing.is_set():
            await _wait(self._closing, self._bus.sweep_interval_s)
            sweeps += 1
            for queue in list(self._queues):
                for stream in queue.streams:
                    try:
                        await self._upkeep(queue, stream, forget=sweeps % 100 == 0)
                    except Exception as error:
                        log.warning(
                            "upkeep of %s on %s failed: %r", queue.link.queue, stream, error
                        )

    async def _upkeep(self, queue: _Queue, stream: str, *, forget: bool) -> None:
        group, client = queue.link.queue, self._client
        held = [entry_id for s, entry_id in queue.in_hand if s == stream]
        await upkeep.touch(client, stream, group, self.consumer, held)
        free = self._amqp.prefetch - len(queue.in_hand)
        if free > 0 and not self._stopping.is_set():
            visibility_ms = queue.link.visibility_ms
            for claimed in await upkeep.claim(
                client, stream, group, self.consumer, visibility_ms, free
            ):
                if claimed.deliveries > self._amqp.delivery_limit:
                    await self._dead_letter_over_limit(queue, stream, claimed)
                else:
                    log.warning("claimed %s of %s from a silent consumer", claimed.entry_id, group)
                    self._start(queue, stream, claimed.entry_id, claimed.fields)
        await upkeep.trim(client, stream)
        if forget:
            await upkeep.forget_gone_consumers(client, stream, group, self.consumer)

    async def _dead_letter_over_limit(
        self, queue: _Queue, stream: str, claimed: upkeep.Claimed
    ) -> None:
        message = from_fields(claimed.fields)
        error = DeliveryLimitExceeded(
            f"delivered {claimed.deliveries} times (limit {self._amqp.delivery_limit}) without "
            "being settled: its consumer died each time"
        )
        failure = story.failure_story(
            message.headers,
            error,
            service=self._service,
            queue=queue.link.queue,
            event_id=message.message_id,
            event_type=message.type,
            exchange=message.exchange,
        )
        headers = story.for_dead_letter(failure, claimed.deliveries, DELIVERY_LIMIT_REASON)
        headers["x-delivery-count"] = claimed.deliveries
        settlement = StreamSettlement(queue.link, stream, claimed.entry_id, message)
        try:
            await settlement.dead_letter(headers)
        except PublishFailed:
            return  # still pending: the next sweep tries again
        log.error("dead-lettered %s from %s: %s", message.message_id, queue.link.queue, error)
        await settlement.ack()

    async def _move_due(self) -> None:
        """Bring due retries back, each to its own queue's retry stream; sleeps until the
        next one is due (bounded, and woken when this process parks one)."""
        while not self._closing.is_set():
            waits: list[float] = [MOVER_MAX_SLEEP_S]
            for queue in list(self._queues):
                name = queue.link.queue
                keys = [
                    self._keys.schedule(name),
                    self._keys.parked(name),
                    self._keys.retries(name),
                ]
                try:
                    moved, wait_ms = await self._move(keys=keys, args=[MOVE_BATCH])
                except Exception as error:
                    log.warning("moving due retries of %s failed: %r", name, error)
                    continue
                if int(moved) >= MOVE_BATCH:
                    waits.append(0.0)
                elif int(wait_ms) >= 0:
                    waits.append(int(wait_ms) / 1000)
            self._parked.clear()
            await _wait(self._parked, max(0.005, min(waits)))


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    """Until `event` is set or `timeout_s` passed."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
