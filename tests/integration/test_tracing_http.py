"""The SERVER span of every request (opentelemetry-instrumentation-fastapi, named and
attributed by the HTTP semantic conventions), driven in process through httpx's ASGI
transport."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from contracts.envelope import Envelope
from contracts.events import OrderConfirmed
from infra.http import create_http_app
from infra.messaging.outbox import outbox_entry
from infra.observability import tracing

pytestmark = pytest.mark.integration

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"


@asynccontextmanager
async def no_lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield


def small_app() -> FastAPI:
    app = create_http_app("itest", no_lifespan)

    @app.post("/orders/{order_id}/confirm")
    async def confirm(order_id: str) -> dict[str, Any]:
        """Writes an outbox entry, as a service's handler would."""
        event = OrderConfirmed(order_id=order_id, customer_id="c-1", total_cents=100)
        entry = outbox_entry(Envelope.wrap(event, producer="itest"))
        return {"traceparent": entry.get("traceparent"), **tracing.current_ids()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("handler bug")

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: a handler bug comes back as the 500 a real server sends.
    transport = httpx.ASGITransport(app=small_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


def server_span(spans: InMemorySpanExporter) -> ReadableSpan:
    [span] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    return span


def ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return trace.format_trace_id(span.context.trace_id), trace.format_span_id(span.context.span_id)


async def test_a_request_continues_the_callers_trace_and_echoes_its_span(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    order_id = str(uuid.uuid4())
    response = await client.post(
        f"/orders/{order_id}/confirm", headers={"traceparent": TRACEPARENT}
    )

    assert response.status_code == 200
    span = server_span(spans)
    trace_id, span_id = ids(span)
    assert span.name == "POST /orders/{order_id}/confirm"
    assert trace_id == TRACE_ID
    assert span.parent is not None
    assert span.parent.is_remote
    assert trace.format_span_id(span.parent.span_id) == CALLER_SPAN_ID
    assert span.attributes is not None
    assert span.attributes["http.status_code"] == 200
    assert span.attributes["http.route"] == "/orders/{order_id}/confirm"
    assert response.headers["traceparent"].startswith(f"00-{TRACE_ID}-{span_id}-")
    body = response.json()
    # The handler ran under the server span: its logs and its outbox entries say so.
    assert (body["trace_id"], body["span_id"]) == (trace_id, span_id)
    assert body["traceparent"] == response.headers["traceparent"]


async def test_a_request_without_traceparent_starts_a_trace(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    response = await client.get("/health")

    span = server_span(spans)
    assert span.parent is None
    assert span.name == "GET /health"
    trace_id, span_id = ids(span)
    assert response.headers["traceparent"].startswith(f"00-{trace_id}-{span_id}-")


async def test_an_unmatched_route_keeps_a_bounded_span_name(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    response = await client.get(f"/nothing/{uuid.uuid4()}", headers={"traceparent": TRACEPARENT})

    assert response.status_code == 404
    span = server_span(spans)
    assert span.name == "GET"  # no route: the method alone, never the raw path
    assert span.status.status_code is StatusCode.UNSET  # a 4xx is not a server error
    assert ids(span)[0] == TRACE_ID


async def test_a_handler_exception_is_recorded_on_the_span(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    response = await client.get("/boom", headers={"traceparent": TRACEPARENT})

    assert response.status_code == 500
    span = server_span(spans)
    assert span.name == "GET /boom"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["http.status_code"] == 500
    [event] = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "RuntimeError"


async def test_unsampled_a_request_still_continues_the_callers_trace(
    client: httpx.AsyncClient,
) -> None:
    """Without a recording provider the bare path runs: no attributes, no spans recorded,
    but the handler (and so its outbox entries) is in the caller's trace all the same."""
    unsampled = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    previous = tracing.use_tracer_provider(unsampled)
    try:
        assert not tracing.recording()
        order_id = str(uuid.uuid4())
        response = await client.post(
            f"/orders/{order_id}/confirm", headers={"traceparent": TRACEPARENT}
        )
    finally:
        tracing.use_tracer_provider(previous)
    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == TRACE_ID
    assert body["span_id"] != CALLER_SPAN_ID  # a span of this server, child of the caller's
    assert body["traceparent"] == response.headers["traceparent"]
    assert response.headers["traceparent"].startswith(f"00-{TRACE_ID}-{body['span_id']}-")


async def test_a_process_wide_provider_still_gives_one_span_per_request(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service installs its provider process-wide (configure_tracing). FastAPI's own
    telemetry, on by default since 0.142, then added a second SERVER span and spans of its
    dependencies and endpoint to every request, on top of ours."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)  # what set_tracer_provider sets
    previous = tracing.use_tracer_provider(provider)
    try:
        response = await client.post(f"/orders/{uuid.uuid4()}/confirm")
    finally:
        tracing.use_tracer_provider(previous)

    assert response.status_code == 200
    finished = exporter.get_finished_spans()
    assert [s.name for s in finished] == ["POST /orders/{order_id}/confirm"]
