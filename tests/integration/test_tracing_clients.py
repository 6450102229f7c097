"""Every MongoDB and Redis round trip is a CLIENT span of the trace that caused it
(opentelemetry-instrumentation-pymongo and -redis, installed by configure_tracing when spans
are recorded), against the real servers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pymongo import AsyncMongoClient

from infra.observability import tracing

pytestmark = pytest.mark.integration


@pytest.fixture
def instrumented(spans: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    tracing.instrument_clients()
    try:
        yield spans
    finally:
        tracing.uninstrument_clients()


async def test_each_database_and_cache_round_trip_is_a_child_span(
    instrumented: InMemorySpanExporter, mongo_url: str, redis_url: str
) -> None:
    # Clients made after instrumenting, as a service makes them after configure_tracing.
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    cache = aioredis.Redis.from_url(redis_url)
    key = f"trace-{uuid.uuid4().hex}"
    try:
        with tracing.start_span("handler", SpanKind.INTERNAL) as parent:
            collection = mongo["tracing_clients"]["things"]
            await collection.insert_one({"_id": key})
            assert await collection.find_one({"_id": key}) == {"_id": key}
            await cache.set(key, "1", ex=60)
            assert await cache.get(key) == b"1"
    finally:
        await mongo.drop_database("tracing_clients")
        await mongo.close()
        await cache.aclose()

    trace_id = parent.get_span_context().trace_id
    clients = [
        s
        for s in instrumented.get_finished_spans()
        if s.kind is SpanKind.CLIENT and s.context is not None and s.context.trace_id == trace_id
    ]
    systems = [(s.attributes or {}).get("db.system") for s in clients]
    assert systems.count("mongodb") == 2, [s.name for s in clients]
    assert systems.count("redis") == 2, [s.name for s in clients]
    parent_id = parent.get_span_context().span_id
    assert all(s.parent is not None and s.parent.span_id == parent_id for s in clients)
    names = {s.name for s in clients}
    assert {"SET", "GET"} <= names, names
    assert {"tracing_clients.insert", "tracing_clients.find"} <= names, names


CONFIGURE = """
from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from infra.observability.tracing import configure_tracing
from infra.settings import TracingSettings
configure_tracing("probe", TracingSettings())
print(PymongoInstrumentor().is_instrumented_by_opentelemetry,
      RedisInstrumentor().is_instrumented_by_opentelemetry)
"""


@pytest.mark.parametrize(
    ("endpoint", "installed"), [(None, "False False"), ("http://127.0.0.1:9", "True True")]
)
def test_client_spans_only_when_an_exporter_records_them(
    endpoint: str | None, installed: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint  # nothing is sent before a span ends
    done = subprocess.run(
        [sys.executable, "-c", CONFIGURE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == installed
