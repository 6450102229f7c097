"""One trace across outbox write -> relay publish -> consume (and retries, dead letters), on
the real broker and MongoDB, with spans collected in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Span, SpanKind, StatusCode
from pymongo.asynchronous.database import AsyncDatabase

from contracts.envelope import Envelope
from contracts.events import OrderPlaced
from contracts.topology import dead_letter_queue_name, exchange_name
from infra.messaging.broker import Broker
from infra.messaging.consumer import Consumer
from infra.messaging.errors import PermanentFailure
from infra.messaging.outbox import OutboxRelay, outbox_fields
from infra.messaging.topology import quorum_arguments
from infra.observability import tracing
from infra.settings import AmqpSettings, OutboxSettings
from tests.integration.events import order_placed
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration


def in_trace(spans: InMemorySpanExporter, root: Span, name: str) -> list[ReadableSpan]:
    trace_id = root.get_span_context().trace_id
    return [
        s
        for s in spans.get_finished_spans()
        if s.name == name and s.context is not None and s.context.trace_id == trace_id
    ]


def parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None, f"{span.name} is a root"
    return span.parent.span_id


def span_id(span: ReadableSpan | Span) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.span_id


def assert_chain(publish: ReadableSpan, consume: ReadableSpan, root: Span) -> None:
    assert (publish.kind, consume.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert parent_of(publish) == span_id(root)
    assert parent_of(consume) == span_id(publish)


async def subscribed(broker: Broker, handler: Any, delays: Sequence[int] = (100,)) -> Any:
    consumer = Consumer(broker, broker.service, AmqpSettings(retry_delays_ms=list(delays)))
    queue = await consumer.subscribe(OrderPlaced, handler)
    return consumer, queue


async def test_the_fast_path_publishes_in_the_writers_trace(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]], spans: InMemorySpanExporter
) -> None:
    handled: list[str] = []

    async def handler(envelope: Envelope, event: OrderPlaced) -> None:
        handled.append(str(envelope.event_id))

    consumer, queue = await subscribed(broker, handler)
    collection = mongo_db["orders"]
    relay = OutboxRelay(broker, collection, OutboxSettings(poll_interval_s=0.2))
    await relay.start()
    envelope = order_placed()
    with tracing.tracer().start_as_current_span("POST /orders") as root:
        await collection.insert_one({"_id": envelope.correlation_id, **outbox_fields([envelope])})
        relay.notify(envelope.correlation_id, [envelope])

    [consume] = await eventually(lambda: in_trace(spans, root, f"consume {queue}"))
    [publish] = in_trace(spans, root, "publish OrderPlaced")
    assert_chain(publish, consume, root)
    assert handled == [str(envelope.event_id)]
    assert consume.attributes is not None
    assert consume.attributes["messaging.system"] == "rabbitmq"
    assert consume.attributes["messaging.destination.name"] == queue
    assert consume.attributes["messaging.message.id"] == str(envelope.event_id)
    assert consume.attributes["messaging.message.conversation_id"] == envelope.correlation_id
    assert consume.attributes["event.type"] == "OrderPlaced"
    assert consume.attributes["messaging.attempt"] == 1
    assert consume.attributes["messaging.outcome"] == "acked"
    assert consume.status.status_code is StatusCode.UNSET
    await consumer.stop()
    await relay.stop()


async def test_the_sweep_publishes_under_the_traceparent_stored_with_the_event(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]], spans: InMemorySpanExporter
) -> None:
    """The writer's process died before its fast path: another relay, later, with no
    context of its own, still continues the writer's trace."""

    async def handler(envelope: Envelope, event: OrderPlaced) -> None:
        return None

    consumer, queue = await subscribed(broker, handler)
    collection = mongo_db["orders"]
    envelope = order_placed()
    with tracing.tracer().start_as_current_span("handle StockReserved") as root:
        await collection.insert_one({"_id": envelope.correlation_id, **outbox_fields([envelope])})
    stored = await collection.find_one({"_id": envelope.correlation_id})
    assert stored is not None
    written = trace.get_current_span(tracing.extract(stored["outbox"][0])).get_span_context()
    assert written.span_id == span_id(root)

    relay = OutboxRelay(broker, collection, OutboxSettings(poll_interval_s=0.1, grace_s=0))
    await relay.start()
    [consume] = await eventually(lambda: in_trace(spans, root, f"consume {queue}"))
    [publish] = in_trace(spans, root, "publish OrderPlaced")
    assert_chain(publish, consume, root)
    await consumer.stop()
    await relay.stop()


async def test_a_retried_message_is_consumed_again_in_the_same_trace(
    broker: Broker, spans: InMemorySpanExporter
) -> None:
    attempts: list[int] = []

    async def flaky(envelope: Envelope, event: OrderPlaced) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            raise ConnectionError("gateway timeout")

    consumer, queue = await subscribed(broker, flaky)
    with tracing.tracer().start_as_current_span("test") as root:
        await broker.publish(order_placed())

    name = f"consume {queue}"
    await eventually(lambda: len(in_trace(spans, root, name)) == 2)
    first, second = sorted(in_trace(spans, root, name), key=attempt)
    assert attempts == [1, 2]
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["messaging.outcome"] == "retried"
    assert first.status.status_code is StatusCode.ERROR
    assert [e.name for e in first.events] == ["exception"]
    assert second.attributes["messaging.outcome"] == "acked"
    # The retry's publish (to the delay tier) is a child of the failed attempt.
    publishes = in_trace(spans, root, "publish OrderPlaced")
    [original] = [s for s in publishes if parent_of(s) == span_id(root)]
    [retry] = [s for s in publishes if s is not original]
    assert parent_of(first) == span_id(original)
    assert parent_of(retry) == span_id(first)
    assert parent_of(second) == span_id(retry)
    await consumer.stop()


def attempt(span: ReadableSpan) -> int:
    assert span.attributes is not None
    value = span.attributes["messaging.attempt"]
    assert isinstance(value, int)
    return value


async def test_a_dead_letter_carries_a_traceparent_of_the_same_trace(
    broker: Broker, spans: InMemorySpanExporter
) -> None:
    async def refusing(envelope: Envelope, event: OrderPlaced) -> None:
        raise PermanentFailure("never valid")

    consumer, queue = await subscribed(broker, refusing)
    with tracing.tracer().start_as_current_span("test") as root:
        await broker.publish(order_placed())

    [consume] = await eventually(lambda: in_trace(spans, root, f"consume {queue}"))
    assert consume.attributes is not None
    assert consume.attributes["messaging.outcome"] == "dead_lettered"
    channel = await broker.new_channel()
    dlq = await channel.declare_queue(
        dead_letter_queue_name(queue), durable=True, arguments=quorum_arguments(AmqpSettings())
    )
    letter = await eventually(lambda: dlq.get(fail=False, no_ack=True))
    carried = trace.get_current_span(tracing.extract(letter.headers)).get_span_context()
    assert carried.trace_id == root.get_span_context().trace_id
    [dead_letter_publish] = [
        s for s in in_trace(spans, root, "publish OrderPlaced") if s.context is not None
        and s.context.span_id == carried.span_id
    ]  # fmt: skip
    assert parent_of(dead_letter_publish) == span_id(consume)
    await consumer.stop()
    await channel.close()


async def test_without_a_recording_provider_a_publish_carries_the_current_context(
    broker: Broker,
) -> None:
    """Nothing exports spans (the default): the publish makes no span of its own, and the
    message still carries the trace of the code that published it."""
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    previous = tracing.use_tracer_provider(provider)
    try:
        assert not tracing.recording()
        channel = await broker.new_channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange_name("OrderPlaced"))
        with tracing.start_span("handler", SpanKind.CONSUMER) as current:
            await broker.publish(order_placed())
        message = await queue.get(timeout=5)
        assert message is not None
        context = current.get_span_context()
        _version, trace_id, parent, _flags = str(message.headers["traceparent"]).split("-")
        assert (trace_id, parent) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    finally:
        tracing.use_tracer_provider(previous)
        provider.shutdown()
