"""OpenTelemetry tracing: one trace per order's story, across HTTP and every service hop.

The W3C `traceparent` (and `tracestate`) travels in HTTP headers, in AMQP message headers and
in outbox entries (an event is published after the request or handler that wrote it finished,
so the writer's context is stored with the event and restored by the relay).

Spans are always created once `configure_tracing` ran, so the context propagates even when
nothing exports them; an OTLP exporter is added only when an endpoint is configured, so the
pipeline runs without a collector. Without an exporter the spans are not sampled: they keep
valid ids (logs, traceparent headers and outbox entries still tie an order's story together)
but record nothing, which costs far less than recording spans nobody reads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace import TracerProvider as ApiTracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from infra.settings import TracingSettings

log = logging.getLogger(__name__)

INSTRUMENTATION = "order-pipeline"
TRACE_KEYS = ("traceparent", "tracestate")
OTLP_MISSING = (
    "an OTLP endpoint is configured but opentelemetry-exporter-otlp-proto-http is not "
    "installed (pip install 'order-pipeline[otlp]'); spans are created but not exported"
)

# W3C TraceContext only, whatever OTEL_PROPAGATORS says: every hop of the pipeline speaks it.
_propagator = TraceContextTextMapPropagator()
# None: the global provider. Kept apart from the global one (which can be set only once per
# process) so tests can install their own in-memory provider and remove it again.
_provider: ApiTracerProvider | None = None
# Until configure_tracing, a proxy that follows the global provider once one is set.
_tracer: trace.Tracer = trace.get_tracer(INSTRUMENTATION)


def configure_tracing(service: str, settings: TracingSettings) -> TracerProvider:
    """Install this process's TracerProvider (once: the global one cannot be replaced)."""
    provider = build_provider(service, settings)
    trace.set_tracer_provider(provider)
    use_tracer_provider(provider)
    return provider


def build_provider(service: str, settings: TracingSettings) -> TracerProvider:
    """A provider naming `service`; it exports over OTLP/HTTP only if an endpoint is set.
    Without an exporter its spans are unsampled: valid ids, nothing recorded."""
    resource = Resource.create({SERVICE_NAME: service})
    endpoint = settings.traces_endpoint()
    exporter = None if endpoint is None else _otlp_exporter(endpoint)
    if exporter is None:
        return TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("exporting spans to %s", endpoint)
    return provider


def _otlp_exporter(endpoint: str) -> SpanExporter | None:
    try:
        # Imported only here: the exporter is an optional extra (`otlp`).
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning(OTLP_MISSING)
        return None
    return OTLPSpanExporter(endpoint=endpoint)


def use_tracer_provider(provider: ApiTracerProvider | None) -> ApiTracerProvider | None:
    """Make the pipeline's spans come from `provider` (None: the global one); returns the
    previous one so a test can put it back."""
    global _provider, _tracer
    previous, _provider = _provider, provider
    _tracer = trace.get_tracer(INSTRUMENTATION, tracer_provider=provider)
    return previous


def tracer() -> trace.Tracer:
    return _tracer


def recording() -> bool:
    """Whether spans are recorded (an exporter or a test's provider is there to read them).
    Hot paths may skip spans of their own when not: the context they carry is the same."""
    provider = _provider if _provider is not None else trace.get_tracer_provider()
    sampler = getattr(provider, "sampler", None)  # SDK providers only; the API's record nothing
    return sampler is not None and sampler is not ALWAYS_OFF


@contextmanager
def start_span(
    name: str,
    kind: SpanKind,
    *,
    parent: Context | None = None,
    attributes: Attributes = None,
) -> Iterator[Span]:
    """A current span, child of `parent` (None: of the current context). An exception leaving
    the block is recorded on it and sets its status to error."""
    with tracer().start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes
    ) as span:
        yield span


@contextmanager
def activated(parent: Context) -> Iterator[None]:
    """Run the block under `parent`, e.g. the context an outbox event was written in."""
    token = otel_context.attach(parent)
    try:
        yield
    finally:
        otel_context.detach(token)


def has_span(context: Context | None = None) -> bool:
    return trace.get_current_span(context).get_span_context().is_valid


class Writable(Protocol):
    """A dict, an outbox entry, Starlette's MutableHeaders."""

    def __setitem__(self, key: str, value: str, /) -> None: ...


def inject(carrier: Writable, context: Context | None = None) -> None:
    """Write `traceparent` (and `tracestate`) of `context` (None: the current one) into a
    headers dict, an outbox entry or HTTP headers; nothing without a valid span."""
    _propagator.inject(carrier, context=context, setter=_SETTER)


def extract(carrier: Mapping[str, Any] | None) -> Context:
    """The context carried by `carrier`; an empty one (a root) if it carries none."""
    return _propagator.extract(carrier or {}, getter=_GETTER)


def publish_parent(headers: Mapping[str, Any] | None) -> Context | None:
    """Parent of a publish: the current span, or else the context the message already
    carries (a copy republished outside any span keeps its trace)."""
    return None if has_span() else extract(headers)


def strip(entry: Mapping[str, Any]) -> dict[str, Any]:
    """`entry` without the trace keys (the Envelope model forbids unknown fields)."""
    return {k: v for k, v in entry.items() if k not in TRACE_KEYS}


def current_ids() -> dict[str, str]:
    """trace_id and span_id of the current span, for log lines; empty without one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {
        "trace_id": trace.format_trace_id(context.trace_id),
        "span_id": trace.format_span_id(context.span_id),
    }


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """Reads AMQP headers (values may arrive as bytes) and HTTP headers (possibly repeated)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        getlist = getattr(carrier, "getlist", None)
        values = getlist(key) if callable(getlist) else [carrier.get(key)]
        found = [_text(v) for v in values if v is not None]
        return found or None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier.keys())


class _HeaderSetter(Setter[Writable]):
    def set(self, carrier: Writable, key: str, value: str) -> None:
        carrier[key] = value


def _text(value: Any) -> str:
    # A malformed header must not stop consumption; the propagator then ignores it.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


_GETTER = _HeaderGetter()
_SETTER = _HeaderSetter()
