"""The hooks' scopes around a message: nested like `with` statements, none swallowing an error;
the publish metrics counting each outcome once (their cached labelled counters included); the
consume tracing without a recording provider."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import REGISTRY

from infra.messaging.errors import PublishFailed
from infra.messaging.hooks import Delivery, Inbound, Outgoing, PublishHook, entered, publishing
from infra.observability import tracing
from infra.observability.message_hooks import (
    RABBITMQ,
    ConsumeMetrics,
    ConsumeTracing,
    PublishMetrics,
)

pytestmark = pytest.mark.unit

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Recorded:
    def __init__(self) -> None:
        self.events: list[str] = []

    @contextmanager
    def scope(self, name: str, *, fail_on_enter: bool = False) -> Iterator[None]:
        if fail_on_enter:
            raise LookupError(f"{name} could not start")
        self.events.append(f"enter {name}")
        try:
            yield
        except BaseException as error:
            self.events.append(f"{name} saw {type(error).__name__}")
            raise
        self.events.append(f"exit {name}")


def test_scopes_are_entered_in_order_and_left_in_reverse() -> None:
    log = Recorded()
    with entered([log.scope("a"), log.scope("b")]):
        log.events.append("body")
    assert log.events == ["enter a", "enter b", "body", "exit b", "exit a"]


def test_every_scope_sees_the_error_of_the_body_and_none_swallows_it() -> None:
    log = Recorded()

    @contextmanager
    def swallowing() -> Iterator[None]:
        try:
            yield
        except ValueError:
            log.events.append("swallowed")

    with pytest.raises(ValueError, match="boom"), entered([log.scope("a"), swallowing()]):
        raise ValueError("boom")
    assert log.events == ["enter a", "swallowed", "a saw ValueError"]


def test_an_exit_that_raises_replaces_the_error_for_the_outer_scopes() -> None:
    log = Recorded()

    @contextmanager
    def failing_exit() -> Iterator[None]:
        yield
        raise KeyError("exit failed")

    with pytest.raises(KeyError) as raised, entered([log.scope("a"), failing_exit()]):
        pass
    assert log.events == ["enter a", "a saw KeyError"]
    assert raised.value.args == ("exit failed",)


def test_a_scope_that_cannot_start_leaves_the_ones_already_entered() -> None:
    log = Recorded()
    scopes = [log.scope("a"), log.scope("b", fail_on_enter=True), log.scope("c")]
    with pytest.raises(LookupError), entered(scopes):
        log.events.append("body")  # never reached
    assert log.events == ["enter a", "a saw LookupError"]


def test_publishing_gives_the_hooks_a_copy_of_the_headers_to_add_to() -> None:
    class Stamping(PublishHook):
        def publish(self, outgoing: Outgoing) -> AbstractContextManager[None]:
            outgoing.headers["stamped"] = outgoing.event_type
            return super().publish(outgoing)

    headers = {"x-schema-version": 1}
    with publishing(
        [Stamping()], "events.order-placed", "", "OrderPlaced", "e-1", "c-1", headers
    ) as outgoing:
        assert outgoing.headers == {"x-schema-version": 1, "stamped": "OrderPlaced"}
    assert headers == {"x-schema-version": 1}  # the caller's own dict is left alone


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_publish_metrics_count_confirmed_and_failed_publishes_by_event_type() -> None:
    metrics = PublishMetrics()
    outgoing = Outgoing("events.order-placed", "", "OrderPlaced", "e-1", "c-1")
    published = "messages_published_total"
    failures = "messages_publish_failures_total"
    before = _sample(published, event_type="OrderPlaced")
    nacked = _sample(failures, event_type="OrderPlaced", reason="nacked")
    unknown = _sample(published, event_type="unknown")

    for _ in range(2):  # the second time through the cached labelled counter
        with metrics.publish(outgoing):
            pass
    with pytest.raises(PublishFailed), metrics.publish(outgoing):
        raise PublishFailed("refused", "OrderPlaced", "nacked")
    with pytest.raises(RuntimeError), metrics.publish(outgoing):
        raise RuntimeError("not a publish outcome")
    with metrics.publish(Outgoing("x", "", "InventedType", None, None)):
        pass

    assert _sample(published, event_type="OrderPlaced") == before + 2
    assert _sample(failures, event_type="OrderPlaced", reason="nacked") == nacked + 1
    assert _sample(published, event_type="unknown") == unknown + 1


def test_without_a_recording_provider_a_handler_runs_in_the_context_its_message_carries() -> None:
    """Nothing exports spans (the default): the consume makes no span of its own, and what the
    handler publishes or logs stays in the trace of the message."""
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    previous = tracing.use_tracer_provider(provider)
    try:
        assert not tracing.recording()
        inbound = Inbound(b"{}", {"traceparent": TRACEPARENT}, "e-1", "OrderPlaced", "c-1")
        delivery = Delivery("inventory.order-placed", inbound, attempt=1)
        with ConsumeTracing(RABBITMQ).attempt(delivery):
            headers: dict[str, Any] = {}
            tracing.inject(headers)
        assert headers["traceparent"] == TRACEPARENT
        assert not tracing.has_span()  # left again afterwards
    finally:
        tracing.use_tracer_provider(previous)
        provider.shutdown()


def test_consume_metrics_count_each_outcome_and_time_every_delivery() -> None:
    metrics = ConsumeMetrics()
    queue = "inventory.order-placed"
    consumed = "messages_consumed_total"
    durations = "message_handler_duration_seconds_count"
    acked = _sample(consumed, queue=queue, event_type="OrderPlaced", outcome="acked")
    timed = _sample(durations, queue=queue)

    for _ in range(2):  # the second time through the cached labelled children
        delivery = Delivery(queue, Inbound(b"{}", {}, "e-1", "OrderPlaced", "c-1"))
        with metrics.delivery(delivery):
            assert _sample("consumer_in_flight_messages", queue=queue) == 1
            delivery.outcome = "acked"
    with pytest.raises(RuntimeError), metrics.delivery(Delivery(queue, delivery.message)):
        raise RuntimeError("no outcome to count")

    assert _sample(consumed, queue=queue, event_type="OrderPlaced", outcome="acked") == acked + 2
    assert _sample(durations, queue=queue) == timed + 3
    assert _sample("consumer_in_flight_messages", queue=queue) == 0
