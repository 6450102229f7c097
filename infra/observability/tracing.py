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
from contextvars import Token
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
    """Install this process's TracerProvider (once: the global one cannot be replaced), and
    the MongoDB and Redis instrumentations when spans are recorded: a span per database round
    trip is worth its cost only when something reads it, and those leaf spans carry no context
    anywhere, so without an exporter they are not even created."""
    provider = build_provider(service, settings)
    trace.set_tracer_provider(provider)
    use_tracer_provider(provider)
    if recording():
        instrument_clients()
    return provider


def instrument_clients() -> None:
    """A CLIENT span per MongoDB command (PyMongo's command listener: clients created from now
    on) and per Redis command or pipeline, from the pipeline's current provider."""
    # Imported here: only processes that record spans load them.
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    PymongoInstrumentor().instrument(tracer_provider=FOLLOWING_PROVIDER)
    RedisInstrumentor().instrument(tracer_provider=FOLLOWING_PROVIDER)


def uninstrument_clients() -> None:
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    PymongoInstrumentor().uninstrument()
    RedisInstrumentor().uninstrument()


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


class activated:
    """Run the block under `parent`, e.g. the context an outbox event was written in. A class,
    not a generator: it runs around every delivery."""

    __slots__ = ("_parent", "_token")

    def __init__(self, parent: Context) -> None:
        self._parent = parent
        self._token: Token[Context] | None = None

    def __enter__(self) -> None:
        self._token = otel_context.attach(self._parent)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)


def has_span(context: Context | None = None) -> bool:
    return trace.get_current_span(context).get_span_context().is_valid


class _FollowingTracer(trace.Tracer):
    """A tracer of whichever provider `use_tracer_provider` set last, looked up at each span.

    Instrumentations take their tracer once, when they are installed; tests install an
    in-memory provider later and remove it again. Following the current provider keeps both
    the pipeline's own spans and the instrumentations' on the same one."""

    def __init__(self, name: str, version: str | None, schema_url: str | None) -> None:
        self._scope = (name, version, schema_url)
        self._cached: tuple[ApiTracerProvider | None, trace.Tracer] | None = None

    def _current(self) -> trace.Tracer:
        cached = self._cached
        if cached is None or cached[0] is not _provider:
            name, version, schema_url = self._scope
            found = trace.get_tracer(name, version, _provider, schema_url)
            self._cached = cached = (_provider, found)
        return cached[1]

    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        return self._current().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._current().start_as_current_span(*args, **kwargs)


class _FollowingProvider(ApiTracerProvider):
    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes | None = None,
    ) -> trace.Tracer:
        return _FollowingTracer(
            instrumenting_module_name, instrumenting_library_version, schema_url
        )


FOLLOWING_PROVIDER = _FollowingProvider()


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
        if type(carrier) is dict:  # message headers: one value per key (read per delivery)
            value = carrier.get(key)
            return None if value is None else [_text(value)]
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
