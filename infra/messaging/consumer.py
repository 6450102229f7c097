"""Consumes work queues with one ack policy for every service.

decode + validate -> handler -> ack. A handler's effect is stored before the ack, so a crash
means redelivery, never loss; handlers are idempotent, so redelivery never means a double effect.
Failures never sleep in the consumer and never block the queue:
- InvalidMessage / PermanentFailure / unknown type / an event type the queue does not subscribe
  to / a header that fails validation / RecursionError: dead-lettered at once, with the reason.
- anything else: republished to the next delay tier (a TTL queue that dead-letters back to the
  work queue; one of the tier's jittered variants, at random), with the attempt count in a
  header; after the last tier, dead-lettered.
The republish is confirmed before the original is acked, so the message exists somewhere at
every instant. Whatever else goes wrong while handling a delivery (a bug outside the handler,
something nobody anticipated) is caught once, around everything, and dead-letters the delivery:
none is ever left neither acked nor rejected, holding a prefetch slot until the queue stalls.

Each delivery is a CONSUMER span, child of the publish that sent it (the `traceparent` header);
a retry or dead-letter republish is a child of that span, so every attempt is in one trace.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from contracts.envelope import Envelope
from contracts.events import Event
from contracts.topology import (
    DEAD_LETTER_EXCHANGE,
    SUBSCRIPTIONS,
    jittered_delays,
    retry_tier_name,
)
from infra.messaging import codec
from infra.messaging.broker import Broker
from infra.messaging.copies import copy_of, failure_headers
from infra.messaging.errors import InvalidMessage, PermanentFailure, PublishFailed
from infra.messaging.headers import ATTEMPT_HEADER, attempt_of
from infra.messaging.topology import declare_retry_tier, declare_subscription
from infra.observability import tracing
from infra.observability.logging import bind_message
from infra.observability.metrics import (
    CONSUMER_IN_FLIGHT,
    HANDLER_DURATION,
    MESSAGES_CONSUMED,
    event_type_label,
)
from infra.settings import AmqpSettings

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, Any], Awaitable[None]]


@dataclass(frozen=True)
class _Subscription:
    queue: str
    # The one event type this queue carries; anything else is dead-lettered, never handled.
    event_type: str
    handler: Handler
    # Per attempt, the delay variants (jitter) of its tier; one is picked at random.
    retry_tiers: tuple[tuple[int, ...], ...]


class Consumer:
    def __init__(self, broker: Broker, service: str, settings: AmqpSettings) -> None:
        self._broker = broker
        self._service = service
        self._settings = settings
        self._consuming: list[tuple[AbstractQueue, str]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
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
        subscription = _Subscription(queue.name, event_type.event_type, handler, tiers)

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._in_flight.add(task)
            try:
                async with self._limit:
                    await self._handle(subscription, message)
            finally:
                self._in_flight.discard(task)

        tag = await queue.consume(on_message)
        self._consuming.append((queue, tag))
        return queue.name

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop taking deliveries, then let the ones in hand finish (bounded)."""
        for queue, tag in self._consuming:
            try:
                await queue.cancel(tag)
            except Exception:  # the connection may already be gone; nothing left to cancel
                log.debug("cancel of %s failed", queue.name, exc_info=True)
        self._consuming.clear()
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=timeout_s)

    async def _handle(self, subscription: _Subscription, message: AbstractIncomingMessage) -> None:
        queue = subscription.queue
        started = time.perf_counter()
        CONSUMER_IN_FLIGHT.labels(queue).inc()
        try:
            outcome = await self._settle(subscription, message)
            # The type property is the sender's word: only known types become label values.
            MESSAGES_CONSUMED.labels(queue, event_type_label(message.type), outcome).inc()
        finally:
            CONSUMER_IN_FLIGHT.labels(queue).dec()
            HANDLER_DURATION.labels(queue).observe(time.perf_counter() - started)

    async def _settle(self, subscription: _Subscription, message: AbstractIncomingMessage) -> str:
        """The one place a delivery ends: acked, retried, dead-lettered or handed back."""
        try:
            outcome = await self._apply(subscription, message)
        except PublishFailed:
            # Could not park the message in a retry tier or DLQ: hand it back to the queue.
            log.warning("requeueing %s: retry/dead-letter publish failed", message.message_id)
            await _nack_quietly(message)
            return "requeued"
        except Exception as error:
            log.exception("unexpected failure consuming %s", message.message_id)
            return await self._dead_letter_unexpected(subscription.queue, message, error)
        # Outside the catch-all: a delivery that was handled is never dead-lettered because its
        # ack failed (the broker redelivers it, and handlers are idempotent).
        await _ack_quietly(message)
        return outcome

    async def _dead_letter_unexpected(
        self, queue: str, message: AbstractIncomingMessage, error: Exception
    ) -> str:
        try:
            await self._dead_letter(queue, message, error, 1, "consumer error")
        except Exception:
            # Not even the dead letter went out: reject it, and the work queue's own
            # dead-letter exchange takes it (with RabbitMQ's x-death instead of our story).
            log.exception("rejecting %s: dead-letter publish failed", message.message_id)
            try:
                await message.reject(requeue=False)
            except Exception:  # channel gone: the broker requeues unacked deliveries itself
                log.debug("reject failed", exc_info=True)
            return "rejected"
        await _ack_quietly(message)
        return "dead_lettered"

    async def _apply(self, subscription: _Subscription, message: AbstractIncomingMessage) -> str:
        queue = subscription.queue
        try:
            attempt = attempt_of(message.headers)
        except InvalidMessage as error:
            await self._dead_letter(queue, message, error, 1, "permanent failure")
            return "dead_lettered"
        bind_message(
            queue=queue,
            event_id=message.message_id,
            event_type=message.type,
            correlation_id=message.correlation_id,
            attempt=attempt,
        )
        attributes: dict[str, str | int] = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": message.message_id or "",
            "messaging.message.conversation_id": message.correlation_id or "",
            "event.type": message.type or "unknown",
            "messaging.attempt": attempt,
        }
        with tracing.start_span(
            f"consume {queue}",
            SpanKind.CONSUMER,
            parent=tracing.extract(message.headers),
            attributes=attributes,
        ) as span:
            outcome = await self._attempt(subscription, message, attempt, span)
            span.set_attribute("messaging.outcome", outcome)
            return outcome

    async def _attempt(
        self,
        subscription: _Subscription,
        message: AbstractIncomingMessage,
        attempt: int,
        span: Span,
    ) -> str:
        queue, tiers = subscription.queue, subscription.retry_tiers
        try:
            envelope, event = codec.decode(message.body)
            if envelope.event_type != subscription.event_type:
                # A wrong replay target or shovel: handling it would apply the wrong event.
                raise InvalidMessage(
                    f"{envelope.event_type} delivered to {queue}, which carries "
                    f"{subscription.event_type} only"
                )
            bind_message(causation_id=envelope.causation_id)
            span.set_attribute("messaging.causation_id", envelope.causation_id or "")
            await subscription.handler(envelope, event)
            return "acked"
        except Exception as error:
            # Handled here (retry or dead letter), so the span would not see it otherwise.
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))
            # A RecursionError (a payload nested too deep for some code path) fails again.
            if isinstance(error, PermanentFailure | RecursionError):
                await self._dead_letter(queue, message, error, attempt, "permanent failure")
                return "dead_lettered"
            if attempt > len(tiers):
                await self._dead_letter(queue, message, error, attempt, "retries exhausted")
                return "dead_lettered"
            delay_ms = random.choice(tiers[attempt - 1])
            await self._retry(queue, message, error, attempt, delay_ms)
            return "retried"

    async def _retry(
        self,
        queue: str,
        message: AbstractIncomingMessage,
        error: Exception,
        attempt: int,
        delay_ms: int,
    ) -> None:
        log.warning(
            "attempt %d of %s on %s failed (%s: %s); retrying in %d ms",
            attempt,
            message.message_id,
            queue,
            type(error).__name__,
            error,
            delay_ms,
        )
        headers = failure_headers(message, error, self._service, queue)
        headers[ATTEMPT_HEADER] = attempt + 1
        retry = copy_of(message, headers)
        # The routing key is the work queue: the tier dead-letters the copy back under it.
        await self._broker.send(
            retry, retry_tier_name(self._service, delay_ms), queue, message.type or ""
        )

    async def _dead_letter(
        self,
        queue: str,
        message: AbstractIncomingMessage,
        error: Exception,
        attempt: int,
        why: str,
    ) -> None:
        log.error(
            "dead-lettering %s from %s after %d attempt(s): %s: %s",
            message.message_id,
            queue,
            attempt,
            type(error).__name__,
            error,
        )
        headers = failure_headers(message, error, self._service, queue)
        headers.update({"x-dead-letter-reason": why, "x-attempts": attempt})
        await self._broker.send(
            copy_of(message, headers), DEAD_LETTER_EXCHANGE, queue, message.type or ""
        )


async def _ack_quietly(message: AbstractIncomingMessage) -> None:
    try:
        await message.ack()
    except Exception:  # channel gone: the broker redelivers; the effect is stored already
        log.warning("ack of %s failed; it will be redelivered", message.message_id, exc_info=True)


async def _nack_quietly(message: AbstractIncomingMessage) -> None:
    try:
        await message.nack(requeue=True)
    except Exception:  # channel gone: the broker requeues unacked deliveries by itself
        log.debug("nack failed", exc_info=True)
