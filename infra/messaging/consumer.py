"""Consumes work queues with one ack policy for every service.

decode + validate -> handler -> ack. A handler's effect is stored before the ack, so a crash
means redelivery, never loss; handlers are idempotent, so redelivery never means a double effect.
Failures never sleep in the consumer and never block the queue:
- InvalidMessage / PermanentFailure / unknown type: dead-lettered at once, with the reason.
- anything else: republished to the next delay tier (a TTL queue that dead-letters back to the
  work queue; one of the tier's jittered variants, at random), with the attempt count in a
  header; after the last tier, dead-lettered.
The republish is confirmed before the original is acked, so the message exists somewhere at
every instant.

Each delivery is a CONSUMER span, child of the publish that sent it (the `traceparent` header);
a retry or dead-letter republish is a child of that span, so every attempt is in one trace.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from contracts.envelope import Envelope
from contracts.events import Event
from contracts.topology import DEAD_LETTER_EXCHANGE, jittered_delays, retry_tier_name
from infra.messaging import codec
from infra.messaging.broker import Broker
from infra.messaging.errors import PermanentFailure, PublishFailed
from infra.messaging.topology import declare_retry_tier, declare_subscription
from infra.observability import tracing
from infra.observability.logging import bind_message
from infra.observability.metrics import CONSUMER_IN_FLIGHT, HANDLER_DURATION, MESSAGES_CONSUMED
from infra.settings import AmqpSettings

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, Any], Awaitable[None]]
ATTEMPT_HEADER = "x-attempt"


@dataclass(frozen=True)
class _Subscription:
    queue: str
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
        subscription = _Subscription(queue.name, handler, tiers)

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
        event_type = message.type or "unknown"
        CONSUMER_IN_FLIGHT.labels(queue).inc()
        try:
            outcome = await self._apply(subscription, message)
            await message.ack()
            MESSAGES_CONSUMED.labels(queue, event_type, outcome).inc()
        except PublishFailed:
            # Could not park the message in a retry tier or DLQ: hand it back to the queue.
            log.warning("requeueing %s: retry/dead-letter publish failed", message.message_id)
            await _nack_quietly(message)
        finally:
            CONSUMER_IN_FLIGHT.labels(queue).dec()
            HANDLER_DURATION.labels(queue).observe(time.perf_counter() - started)

    async def _apply(self, subscription: _Subscription, message: AbstractIncomingMessage) -> str:
        queue = subscription.queue
        attempt = _int_header(message, ATTEMPT_HEADER, default=1)
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
            bind_message(causation_id=envelope.causation_id)
            span.set_attribute("messaging.causation_id", envelope.causation_id or "")
            await subscription.handler(envelope, event)
            return "acked"
        except Exception as error:
            # Handled here (retry or dead letter), so the span would not see it otherwise.
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))
            if isinstance(error, PermanentFailure):
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
        headers = _failure_headers(message, error, self._service, queue)
        headers[ATTEMPT_HEADER] = attempt + 1
        retry = _copy(message, headers)
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
        headers = _failure_headers(message, error, self._service, queue)
        headers.update({"x-dead-letter-reason": why, "x-attempts": attempt})
        await self._broker.send(
            _copy(message, headers), DEAD_LETTER_EXCHANGE, queue, message.type or ""
        )


def _failure_headers(
    message: AbstractIncomingMessage, error: Exception, service: str, queue: str
) -> dict[str, Any]:
    """Keep the story of a failing message in its headers, readable in the management UI."""
    now = datetime.now(UTC).isoformat()
    headers = dict(message.headers or {})
    short_trace = "".join(traceback.format_exception(error, limit=4))[-2000:]
    headers.update(
        {
            "x-exception-class": type(error).__name__,
            "x-exception-message": str(error)[:1000],
            "x-traceback": short_trace,
            "x-service": service,
            "x-original-queue": queue,
            "x-last-failure-at": now,
            "x-event-id": message.message_id or "",
            "x-event-type": message.type or "",
        }
    )
    headers.setdefault("x-original-exchange", message.exchange or "")
    headers.setdefault("x-first-failure-at", now)
    return headers


def _copy(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        type=message.type,
        app_id=message.app_id,
        timestamp=message.timestamp,
    )


def _int_header(message: AbstractIncomingMessage, name: str, default: int) -> int:
    value = (message.headers or {}).get(name, default)
    try:
        return max(1, int(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


async def _nack_quietly(message: AbstractIncomingMessage) -> None:
    try:
        await message.nack(requeue=True)
    except Exception:  # channel gone: the broker requeues unacked deliveries by itself
        log.debug("nack failed", exc_info=True)
