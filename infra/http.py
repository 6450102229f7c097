"""The HTTP app every service starts from: /health, /ready, /metrics, request metrics and a
SERVER span per request (infra.observability.http_tracing: opentelemetry-instrumentation-fastapi
when spans are recorded), continuing an incoming W3C `traceparent`, echoed in the response."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from importlib import metadata

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from infra.http_errors import (
    BodySizeLimit,
    document_problems,
    error_response,
    install_error_handlers,
)
from infra.observability import tracing
from infra.observability.http_tracing import instrument_http
from infra.observability.metrics import HTTP_DURATION, HTTP_REQUESTS
from infra.readiness import Readiness

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_http_app(service: str, lifespan: Lifespan, description: str = "") -> FastAPI:
    app = FastAPI(
        title=f"{service} service",
        description=description,
        lifespan=lifespan,
        # The API version is the package's: one release, one version, in every document.
        version=metadata.version("order-pipeline"),
        # Operation ids are the handlers' names (`place_order`), short and stable across path
        # changes, rather than FastAPI's name+path+method default.
        generate_unique_id_function=_operation_id,
    )

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """The process is up and its event loop answers."""
        return {"status": "ok", "service": service}

    @app.get("/ready", tags=["operations"], responses={503: {"description": "not ready"}})
    async def ready(request: Request) -> JSONResponse:
        """200 unless a server this process cannot work without is unreachable (503). A
        broker outage, or a Redis outage where Redis is only a cache, answers 200 with status
        `degraded` and the failing checks in `degraded` (infra.readiness)."""
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is None:
            readiness = Readiness({"started": False}, frozenset({"started"}))
        else:
            readiness = await runtime.readiness()
        if readiness.ready:
            return JSONResponse(readiness.body())
        # Not ready is an error response like any other: a problem, with the checks in it.
        failing = ", ".join(
            n for n, ok in readiness.checks.items() if not ok and n in readiness.required
        )
        return error_response(
            503, "not_ready", f"not ready: {failing}", None, {"checks": readiness.checks}
        )

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def count_request(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Prometheus metrics under the names the dashboard and alerts query; the request's
        # SERVER span (instrument_http below) is current here.
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            tracing.inject(response.headers)  # the caller learns the request's trace
            return response
        finally:
            route = _route_template(request)
            HTTP_REQUESTS.labels(route, request.method, str(status)).inc()
            HTTP_DURATION.labels(route, request.method).observe(time.perf_counter() - started)

    install_error_handlers(app)
    document_problems(app)
    app.add_middleware(BodySizeLimit)
    instrument_http(app)
    return app


def _operation_id(route: APIRoute) -> str:
    return route.name


def _route_template(request: Request) -> str:
    """The matched route's path template (routing records it in the scope), so label values
    stay bounded: /orders/{order_id}, never one label per order."""
    route = request.scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")
