"""Consumes work queues over aio-pika with one ack policy for every service.

decode + validate -> handler -> ack. A handler's effect is stored before the ack, so a crash
means redelivery, never loss; handlers are idempotent, so redelivery never means a double effect.
What becomes of each delivery is decided by infra.messaging.dispatch and the retry policy
(infra.messaging.retry_policy); this module carries it out on RabbitMQ. Failures never sleep in
the consumer and never block the queue: a retry is a copy republished to a delay tier (a TTL
queue that dead-letters back to the work queue), a dead letter a copy published to the
dead-letter exchange. Either copy is confirmed before the original is acked, so the message
exists somewhere at every instant.

Tracing, metrics and log context are the broker's hooks (infra.observability.message_hooks).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from contracts.events import Event
from contracts.topology import (
    DEAD_LETTER_EXCHANGE,
    SUBSCRIPTIONS,
    jittered_delays,
    retry_tier_name,
)
from infra.messaging.broker import Broker
from infra.messaging.copies import copy_of
from infra.messaging.dispatch import Dispatch, Handler, Subscription
from infra.messaging.hooks import Inbound
from infra.messaging.topology import declare_retry_tier, declare_subscription
from infra.settings import AmqpSettings

__all__ = ["Consumer", "Handler"]

log = logging.getLogger(__name__)
ACKS_TIMEOUT_S = 5.0


class Consumer:
    def __init__(self, broker: Broker, service: str, settings: AmqpSettings) -> None:
        self._broker = broker
        self._service = service
        self._settings = settings
        self._dispatch = Dispatch(service, broker.hooks.consume)
        self._consuming: list[tuple[AbstractQueue, str]] = []
        # Deliveries being handled, and what stop() waits on until there are none.
        self._handling = 0
        self._idle: asyncio.Event | None = None
        # Delays (ms) whose tier this service has declared: its queues share them.
        self._declared_tiers: set[int] = set()
        # Prefetch bounds deliveries per queue; this bounds handlers across all queues.
        self._limit = asyncio.Semaphore(settings.max_in_flight)

    async def subscribe(
        self,
        event_type: type[Event],
        handler: Handler,
        retry_delays_ms: list[int] | None = None,
    ) -> str:
        """Declare this service's queue for `event_type` (with its own delay tiers if given)
        and start consuming it."""
        subscribed = SUBSCRIPTIONS.get(self._service)
        if subscribed is not None and event_type not in subscribed:
            raise ValueError(f"{self._service} does not subscribe to {event_type.event_type}")
        settings = self._settings
        if retry_delays_ms is not None:
            settings = settings.model_copy(update={"retry_delays_ms": retry_delays_ms})
        channel = await self._broker.new_channel()
        await channel.set_qos(prefetch_count=settings.prefetch)
        queue = await declare_subscription(channel, self._service, event_type.event_type, settings)
        tiers = tuple(jittered_delays(d, settings.retry_jitter) for d in settings.retry_delays_ms)
        for delay_ms in sorted({v for variants in tiers for v in variants} - self._declared_tiers):
            # On this channel, which (being robust) declares it again after a reconnect.
            await declare_retry_tier(channel, self._service, delay_ms, self._settings)
            self._declared_tiers.add(delay_ms)
        subscription = Subscription(queue.name, event_type.event_type, handler, tiers)

        async def on_message(message: AbstractIncomingMessage) -> None:
            self._handling += 1
            try:
                async with self._limit:
                    settlement = _AmqpSettlement(self._broker, self._service, queue.name, message)
                    await self._dispatch(subscription, inbound(message), settlement)
            finally:
                self._handling -= 1
                if self._handling == 0 and self._idle is not None:
                    self._idle.set()

        tag = await queue.consume(on_message)
        self._consuming.append((queue, tag))
        return queue.name

    @property
    def handling(self) -> int:
        """Deliveries being handled now."""
        return self._handling

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop taking deliveries, let the ones in hand finish (bounded), then make sure the
        broker has their acks."""
        consuming, self._consuming = self._consuming, []
        for queue, tag in consuming:
            try:
                await queue.cancel(tag)
            except Exception:  # the connection may already be gone; nothing left to cancel
                log.debug("cancel of %s failed", queue.name, exc_info=True)
        if self._handling:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            except TimeoutError:
                log.warning("%d deliveries still in hand after %.0f s", self._handling, timeout_s)
            finally:
                self._idle = None
        for queue, _ in consuming:
            await self._acks_received(queue)

    async def _acks_received(self, queue: AbstractQueue) -> None:
        """Return once the broker has processed the acks queued on `queue`'s channel (they are
        not awaited until written, see _AmqpSettlement.ack): a broker handles a channel's
        frames in order, so the answer to a request sent after them means it has them. Without
        this, closing the connection right after stop() could drop them, and the broker would
        deliver those messages again."""
        try:
            async with asyncio.timeout(ACKS_TIMEOUT_S):
                await queue.channel.set_qos(prefetch_count=self._settings.prefetch)
        except Exception:  # the connection is gone: unacked deliveries come again, as ever
            log.debug("acks on %s not confirmed", queue.name, exc_info=True)


def inbound(message: AbstractIncomingMessage) -> Inbound:
    return Inbound(
        body=message.body,
        headers=message.headers or {},
        message_id=message.message_id,
        type=message.type,
        correlation_id=message.correlation_id,
        exchange=message.exchange or "",
    )


class _AmqpSettlement:
    """Settles one delivery of `queue` on RabbitMQ (see dispatch.Settlement). A plain
    class with slots: one is made for every delivery."""

    __slots__ = ("broker", "message", "queue", "service")

    def __init__(
        self, broker: Broker, service: str, queue: str, message: AbstractIncomingMessage
    ) -> None:
        self.broker = broker
        self.service = service
        self.queue = queue
        self.message = message

    async def ack(self) -> None:
        # Queued for the connection's writer, not awaited until written (aio-pika's
        # `message.ack()` waits for that): the wait cost a wake-up of every coroutine between
        # the consumer and here, for each delivery. An ack lost with the connection means a
        # redelivery, as before; Consumer.stop makes sure the broker has the queued ones.
        message = self.message
        try:
            assert message.delivery_tag is not None
            await message.channel.basic_ack(message.delivery_tag, wait=False)
        except Exception:  # channel gone: the broker redelivers; the effect is stored already
            log.warning(
                "ack of %s failed; it will be redelivered", message.message_id, exc_info=True
            )

    async def requeue(self) -> None:
        try:
            await self.message.nack(requeue=True)
        except Exception:  # channel gone: the broker requeues unacked deliveries by itself
            log.debug("nack failed", exc_info=True)

    async def reject(self) -> None:
        # The work queue's own dead-letter exchange takes it (with RabbitMQ's x-death).
        try:
            await self.message.reject(requeue=False)
        except Exception:  # channel gone: the broker requeues unacked deliveries itself
            log.debug("reject failed", exc_info=True)

    async def retry(self, delay_ms: int, headers: dict[str, Any]) -> None:
        # The routing key is the work queue: the tier dead-letters the copy back under it.
        tier = retry_tier_name(self.service, delay_ms)
        await self._send(tier, headers)

    async def dead_letter(self, headers: dict[str, Any]) -> None:
        await self._send(DEAD_LETTER_EXCHANGE, headers)

    async def _send(self, exchange: str, headers: dict[str, Any]) -> None:
        copy = copy_of(self.message, headers)
        await self.broker.send(copy, exchange, self.queue, self.message.type or "")
