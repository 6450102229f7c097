"""Trace context propagation helpers, outbox entries and log lines, without I/O."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import uuid
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision

from contracts.envelope import Envelope
from contracts.events import OrderConfirmed
from infra.messaging.broker import Broker
from infra.messaging.hooks import Delivery, Hooks, Inbound, Outgoing
from infra.messaging.jetstream.bus import JetStreamBus
from infra.messaging.outbox import _envelope, outbox_entry
from infra.observability import tracing
from infra.observability.logging import JsonFormatter
from infra.observability.message_hooks import (
    NATS,
    RABBITMQ,
    REDIS,
    ConsumeTracing,
    PublishTracing,
    default_hooks,
)
from infra.settings import NatsSettings, TracingSettings

pytestmark = pytest.mark.unit

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def confirmed() -> Envelope:
    event = OrderConfirmed(order_id=str(uuid.uuid4()), customer_id="c-1", total_cents=100)
    return Envelope.wrap(event, producer="utest")


def test_a_traceparent_round_trips_through_a_headers_dict(spans: InMemorySpanExporter) -> None:
    headers: dict[str, Any] = {"x-schema-version": 1}
    with tracing.tracer().start_as_current_span("publish") as span:
        tracing.inject(headers)
    sent = span.get_span_context()

    ids = f"{trace.format_trace_id(sent.trace_id)}-{trace.format_span_id(sent.span_id)}"
    assert headers["traceparent"] == f"00-{ids}-{sent.trace_flags:02x}"
    assert sent.trace_flags.sampled
    received = trace.get_current_span(tracing.extract(headers)).get_span_context()
    assert (received.trace_id, received.span_id) == (sent.trace_id, sent.span_id)
    assert received.is_remote
    assert headers["x-schema-version"] == 1  # other headers untouched


def test_tracestate_and_bytes_header_values_are_read() -> None:
    # AMQP header values may arrive as bytes, depending on how the publisher encoded them.
    carried = {"traceparent": TRACEPARENT.encode(), "tracestate": b"vendor=abc"}
    context = trace.get_current_span(tracing.extract(carried)).get_span_context()
    assert trace.format_trace_id(context.trace_id) == "0af7651916cd43dd8448eb211c80319c"
    assert context.trace_state.get("vendor") == "abc"
    again: dict[str, Any] = {}
    tracing.inject(again, tracing.extract(carried))
    assert again == {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"}


@pytest.mark.parametrize(
    "headers",
    [None, {}, {"traceparent": "garbage"}, {"traceparent": b"\xff\xfe"}, {"traceparent": 42}],
)
def test_missing_or_malformed_context_means_a_new_root(headers: dict[str, Any] | None) -> None:
    assert not tracing.has_span(tracing.extract(headers))


def test_nothing_is_injected_without_a_span() -> None:
    headers: dict[str, Any] = {}
    tracing.inject(headers)
    assert headers == {}
    assert tracing.current_ids() == {}


def test_an_outbox_entry_keeps_its_writers_traceparent_apart_from_the_envelope(
    spans: InMemorySpanExporter,
) -> None:
    envelope = confirmed()
    assert "traceparent" not in outbox_entry(envelope)
    with tracing.tracer().start_as_current_span("write") as span:
        entry = outbox_entry(envelope)
    written = trace.get_current_span(tracing.extract(entry)).get_span_context()
    assert written.span_id == span.get_span_context().span_id
    assert _envelope(entry) == envelope  # the Envelope model forbids the extra key


def test_a_publish_outside_any_span_continues_the_trace_its_message_carries(
    spans: InMemorySpanExporter,
) -> None:
    parent = tracing.publish_parent({"traceparent": TRACEPARENT})
    assert parent is not None
    assert trace.format_trace_id(trace.get_current_span(parent).get_span_context().trace_id) == (
        "0af7651916cd43dd8448eb211c80319c"
    )
    with tracing.tracer().start_as_current_span("handling"):
        assert tracing.publish_parent({"traceparent": TRACEPARENT}) is None  # the current span


def line() -> dict[str, Any]:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "handled", None, None)
    return dict(json.loads(JsonFormatter("order").format(record)))


def test_log_lines_carry_the_current_trace_and_span_ids(spans: InMemorySpanExporter) -> None:
    assert "trace_id" not in line()
    with tracing.tracer().start_as_current_span("handle") as span:
        ids = line()
    context = span.get_span_context()
    assert ids["trace_id"] == trace.format_trace_id(context.trace_id)
    assert ids["span_id"] == trace.format_span_id(context.span_id)


def test_no_endpoint_means_no_exporter_and_the_endpoint_variables() -> None:
    assert TracingSettings().traces_endpoint() is None
    base = TracingSettings(exporter_otlp_endpoint="http://127.0.0.1:4318/")
    assert base.traces_endpoint() == "http://127.0.0.1:4318/v1/traces"
    full = base.model_copy(update={"exporter_otlp_traces_endpoint": "http://127.0.0.1:9/t"})
    assert full.traces_endpoint() == "http://127.0.0.1:9/t"


def test_the_endpoint_is_read_from_the_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert TracingSettings().traces_endpoint() == "http://127.0.0.1:4318/v1/traces"


def test_a_provider_names_the_service_and_exports_only_when_configured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=tracing.__name__)
    quiet = tracing.build_provider("payment", TracingSettings())
    assert quiet.resource.attributes["service.name"] == "payment"
    assert caplog.messages == []
    # Nothing exports: spans record nothing, yet their ids carry the trace to the next hop.
    with quiet.get_tracer("t").start_as_current_span("request") as request:
        assert not request.is_recording()
        with quiet.get_tracer("t").start_as_current_span("publish") as publish:
            headers: dict[str, str] = {}
            tracing.inject(headers)
    trace_id = f"{request.get_span_context().trace_id:032x}"
    span_id = f"{publish.get_span_context().span_id:016x}"
    version, carried_trace, parent, flags = headers["traceparent"].split("-")
    assert (version, carried_trace, parent) == ("00", trace_id, span_id)
    assert int(flags, 16) & 1 == 0  # the sampled bit: downstream need not record either
    endpoint = TracingSettings(exporter_otlp_endpoint="http://127.0.0.1:4318")
    exporting = tracing.build_provider("payment", endpoint)
    assert caplog.messages == ["exporting spans to http://127.0.0.1:4318/v1/traces"]
    # With an exporter, spans are sampled (recorded) again.
    assert exporting.sampler.should_sample(None, 1, "any").decision is Decision.RECORD_AND_SAMPLE
    quiet.shutdown()
    exporting.shutdown()  # nothing was recorded, so nothing is sent


def test_a_configured_endpoint_without_the_exporter_installed_warns(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    module = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    monkeypatch.setitem(sys.modules, module, None)
    settings = TracingSettings(exporter_otlp_endpoint="http://127.0.0.1:4318")
    provider = tracing.build_provider("order", settings)
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "order-pipeline[otlp]" in caplog.messages[0]
    with provider.get_tracer("t").start_as_current_span("still traced") as span:
        assert span.get_span_context().is_valid  # context still propagates
    provider.shutdown()


@pytest.mark.parametrize("system", [RABBITMQ, NATS, REDIS])
def test_every_bus_names_its_spans_alike_and_says_which_system_carried_them(
    spans: InMemorySpanExporter, system: str
) -> None:
    hooks = default_hooks(system)
    outgoing = Outgoing("events.order-confirmed", "", "OrderConfirmed", "e-1", "c-1")
    with contextlib.ExitStack() as stack:
        for hook in hooks.publish:
            stack.enter_context(hook.publish(outgoing))
    inbound = Inbound(b"{}", outgoing.headers, "e-1", "OrderConfirmed", "c-1")
    delivery = Delivery("notification.order-confirmed", inbound, attempt=1, outcome="acked")
    with contextlib.ExitStack() as stack:
        for consume_hook in hooks.consume:
            stack.enter_context(consume_hook.attempt(delivery))
    publish, consume = spans.get_finished_spans()
    assert (publish.name, consume.name) == (
        "publish OrderConfirmed",
        "consume notification.order-confirmed",
    )
    assert publish.attributes is not None
    assert consume.attributes is not None
    assert publish.attributes["messaging.system"] == consume.attributes["messaging.system"]
    assert consume.attributes["messaging.system"] == system
    assert publish.attributes["messaging.destination.name"] == "events.order-confirmed"
    routing_key = "messaging.rabbitmq.destination.routing_key"
    assert (routing_key in publish.attributes) == (system == RABBITMQ)


def test_each_transport_tells_its_hooks_which_system_it_is() -> None:
    def systems(hooks: Hooks) -> set[str]:
        tracers = [*hooks.consume, *hooks.publish]
        return {h.system for h in tracers if isinstance(h, ConsumeTracing | PublishTracing)}

    assert systems(Broker("amqp://127.0.0.1:1/", "order").hooks) == {RABBITMQ}
    assert systems(JetStreamBus("nats://127.0.0.1:1", "order", NatsSettings()).hooks) == {NATS}
