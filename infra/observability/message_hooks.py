"""Tracing, metrics and log context as hooks around consuming and publishing (see
infra.messaging.hooks); `default_hooks(system)` is the list every transport uses, `system`
being its `messaging.system` (rabbitmq, nats, redis): the span and metric names and labels are
the same on every bus, only that attribute says which one carried the message.

Each delivery is a CONSUMER span, child of the publish that sent it (the `traceparent`
header); a retry or dead-letter republish is a child of that span, so every attempt is in one
trace. Every publish is a PRODUCER span whose `traceparent` goes into the message headers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from infra.messaging.errors import PublishFailed
from infra.messaging.hooks import NO_SCOPE, ConsumeHook, Delivery, Hooks, Outgoing, PublishHook
from infra.observability import tracing
from infra.observability.logging import bind_delivery
from infra.observability.metrics import (
    CONSUMER_IN_FLIGHT,
    HANDLER_DURATION,
    MESSAGES_CONSUMED,
    MESSAGES_PUBLISHED,
    PUBLISH_FAILURES,
    event_type_label,
)
from infra.observability.tallies import Count, Distribution

# OpenTelemetry's `messaging.system` values of the buses (EVENT_BUS).
RABBITMQ = "rabbitmq"
NATS = "nats"
REDIS = "redis"


class LogContext(ConsumeHook):
    """Every log line of a delivery's task carries its ids (the causation id too, once the
    body is decoded); they are read from the delivery only when a line is written."""

    def attempt(self, delivery: Delivery) -> AbstractContextManager[None]:
        bind_delivery(delivery)
        return NO_SCOPE


class ConsumeTracing(ConsumeHook):
    def __init__(self, system: str) -> None:
        self.system = system

    def attempt(self, delivery: Delivery) -> AbstractContextManager[None]:
        parent = tracing.extract(delivery.message.headers)
        if not tracing.recording():
            # No span of its own (nothing would record it): the handler runs in the context
            # the message carries, so what it publishes and logs stays in the same trace.
            return tracing.activated(parent)
        return self._span(delivery, parent)

    @contextmanager
    def _span(self, delivery: Delivery, parent: Context) -> Iterator[None]:
        message = delivery.message
        attributes: dict[str, str | int] = {
            "messaging.system": self.system,
            "messaging.operation.type": "process",
            "messaging.destination.name": delivery.queue,
            "messaging.message.id": message.message_id or "",
            "messaging.message.conversation_id": message.correlation_id or "",
            "event.type": message.type or "unknown",
            "messaging.attempt": delivery.attempt or 1,
        }
        with tracing.start_span(
            f"consume {delivery.queue}", SpanKind.CONSUMER, parent=parent, attributes=attributes
        ) as span:
            try:
                yield
                if delivery.outcome is not None:
                    span.set_attribute("messaging.outcome", delivery.outcome)
            finally:
                # Known once the body was decoded, read here rather than in a `decoded` hook,
                # which every delivery would call even when no span records it.
                if delivery.causation_id is not None:
                    span.set_attribute("messaging.causation_id", delivery.causation_id)

    def failed(self, delivery: Delivery, error: Exception) -> None:
        # Handled (retried or dead-lettered), so the span would not see it otherwise.
        span = trace.get_current_span()
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))


class ConsumeMetrics(ConsumeHook):
    """Deliveries in flight, handled (by outcome) and their duration, by queue. The labelled
    children are looked up once per queue (and outcome), not for every delivery; queues,
    known event types and outcomes are few."""

    def __init__(self) -> None:
        self._per_queue: dict[str, tuple[Count, Distribution]] = {}
        self._consumed: dict[tuple[str, str, str], Count] = {}

    def delivery(self, delivery: Delivery) -> AbstractContextManager[None]:
        queue = delivery.queue
        children = self._per_queue.get(queue)
        if children is None:
            children = (CONSUMER_IN_FLIGHT.labels(queue), HANDLER_DURATION.labels(queue))
            self._per_queue[queue] = children
        return _Handled(self, delivery, *children)

    def consumed(self, queue: str, event_type: str | None, outcome: str) -> Count:
        # The type is the sender's word: only known types become label values.
        key = (queue, event_type_label(event_type), outcome)
        counter = self._consumed.get(key)
        if counter is None:
            counter = self._consumed[key] = MESSAGES_CONSUMED.labels(*key)
        return counter


class _Handled:
    """Around one delivery: in flight meanwhile; its duration whatever its end; counted by
    outcome when it ended normally with one."""

    __slots__ = ("_delivery", "_duration", "_in_flight", "_metrics", "_started")

    def __init__(
        self, metrics: ConsumeMetrics, delivery: Delivery, in_flight: Count, duration: Distribution
    ) -> None:
        self._metrics = metrics
        self._delivery = delivery
        self._in_flight = in_flight
        self._duration = duration
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()
        self._in_flight.inc()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            delivery = self._delivery
            if exc is None and delivery.outcome is not None:
                self._metrics.consumed(
                    delivery.queue, delivery.message.type, delivery.outcome
                ).inc()
        finally:
            self._in_flight.dec()
            self._duration.observe(time.perf_counter() - self._started)


class PublishTracing(PublishHook):
    def __init__(self, system: str) -> None:
        self.system = system

    def publish(self, outgoing: Outgoing) -> AbstractContextManager[None]:
        if not tracing.recording():
            # No span of its own (nothing would record it, and it costs about a tenth of a
            # publish): the message carries the current context, or, outside any span (inject
            # then writes nothing), keeps the one it has.
            tracing.inject(outgoing.headers)
            return NO_SCOPE
        return self._span(outgoing)

    @contextmanager
    def _span(self, outgoing: Outgoing) -> Iterator[None]:
        attributes = {
            "messaging.system": self.system,
            "messaging.operation.type": "send",
            "messaging.destination.name": outgoing.exchange or outgoing.routing_key,
            "messaging.message.id": outgoing.message_id or "",
            "messaging.message.conversation_id": outgoing.correlation_id or "",
            "event.type": outgoing.event_type,
        }
        if self.system == RABBITMQ:
            attributes["messaging.rabbitmq.destination.routing_key"] = outgoing.routing_key
        with tracing.start_span(
            f"publish {outgoing.event_type}",
            SpanKind.PRODUCER,
            parent=tracing.publish_parent(outgoing.headers),
            attributes=attributes,
        ):
            # A copy (retry, dead letter) carries its original's traceparent; this publish
            # replaces it, so the next consume is a child of this span, in the same trace.
            tracing.inject(outgoing.headers)
            yield


class PublishMetrics(PublishHook):
    """Counts confirmed publishes and failed ones by event type. The labelled counter of each
    event type is looked up once, not for every publish."""

    def __init__(self) -> None:
        self._published: dict[str, Count] = {}

    def publish(self, outgoing: Outgoing) -> AbstractContextManager[None]:
        label = event_type_label(outgoing.event_type)
        published = self._published.get(label)
        if published is None:
            # Bounded: the known event types and one value for the rest.
            published = self._published[label] = MESSAGES_PUBLISHED.labels(label)
        return _Counted(label, published)


class _Counted:
    """Around one publish: counts it as published on a normal exit, as failed (with its
    reason) on a PublishFailed; anything else is not a publish outcome."""

    __slots__ = ("_label", "_published")

    def __init__(self, label: str, published: Count) -> None:
        self._label = label
        self._published = published

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self._published.inc()
        elif isinstance(exc, PublishFailed):
            PUBLISH_FAILURES.labels(self._label, exc.kind).inc()


def default_hooks(system: str) -> Hooks:
    """Log context, then tracing (so its lines carry the ids), then metrics; `system`: the
    transport's `messaging.system` (RABBITMQ, NATS, REDIS)."""
    return Hooks(
        consume=(ConsumeMetrics(), LogContext(), ConsumeTracing(system)),
        publish=(PublishMetrics(), PublishTracing(system)),
    )
