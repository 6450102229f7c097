"""The SERVER span of each HTTP request: opentelemetry-instrumentation-fastapi when spans are
recorded, a bare context-carrying span when they are not.

The standard instrumentation builds each request's semantic-convention attributes and feeds
its metric instruments before it knows whether the span is sampled. Without an exporter
nothing reads any of that, yet the request still needs a span: the handler runs under it, so
the outbox entries it writes and the logs it prints carry the caller's trace. So the app gets
both stacks and picks one per request: the instrumented one while a recording provider is in
place (an exporter, or a test's in-memory provider), otherwise a pure-ASGI span that only
continues the incoming `traceparent`.
"""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Receive, Scope, Send

from infra.observability import tracing

_TRACE_HEADERS = (b"traceparent", b"tracestate")


class _ContextOnly:
    """A non-recording SERVER span continuing the caller's trace; nothing else per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode(): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _TRACE_HEADERS
        }
        with tracing.start_span("HTTP", SpanKind.SERVER, parent=tracing.extract(carrier)):
            await self.app(scope, receive, send)


class _RecordedOrNot:
    def __init__(self, instrumented: ASGIApp, bare: ASGIApp) -> None:
        self.instrumented = instrumented
        self.bare = bare

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self.instrumented if tracing.recording() else self.bare
        await target(scope, receive, send)


def instrument_http(app: FastAPI) -> None:
    """Give `app` its SERVER spans (see the module docstring). No spans around each ASGI
    receive/send message, even when recorded: they say nothing the request span does not."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    plain_build = app.build_middleware_stack
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracing.FOLLOWING_PROVIDER, exclude_spans=["receive", "send"]
    )
    instrumented_build = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return _RecordedOrNot(instrumented_build(), _ContextOnly(plain_build()))

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
