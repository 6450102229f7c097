"""The HTTP app every service starts from: /health, /ready, /metrics, request metrics and a
SERVER span per request (infra.observability.http_tracing: opentelemetry-instrumentation-fastapi
when spans are recorded), continuing an incoming W3C `traceparent`, echoed in the response."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from importlib import metadata

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        # FastAPI's own OpenTelemetry (on by default since 0.142) would add, once a service
        # installs its provider, a second SERVER span and spans of each request's
        # dependencies and endpoint: our SERVER span (instrument_http), Prometheus metrics
        # and JSON logs already say all of it, and the extra spans cost every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
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

    app.add_middleware(RequestMetrics)
    install_error_handlers(app)
    document_problems(app)
    app.add_middleware(BodySizeLimit)
    instrument_http(app)
    return app


class RequestMetrics:
    """Prometheus metrics of every request, under the names the dashboard and alerts query,
    and the request's trace in the response headers. Plain ASGI: a `@app.middleware("http")`
    (Starlette's BaseHTTPMiddleware) runs each request through a task and memory streams of
    its own, a cost on every request for nothing this needs."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_trace(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # The request's SERVER span (instrument_http) is current: the caller learns it.
                tracing.inject(MutableHeaders(scope=message))
            await send(message)

        try:
            await self._app(scope, receive, send_with_trace)
        finally:
            route = _route_template(scope)
            HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
            HTTP_DURATION.labels(route, scope["method"]).observe(time.perf_counter() - started)


def _operation_id(route: APIRoute) -> str:
    return route.name


def _route_template(scope: Scope) -> str:
    """The matched route's path template (routing records it in the scope), so label values
    stay bounded: /orders/{order_id}, never one label per order."""
    route = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")
