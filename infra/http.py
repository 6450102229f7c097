"""The HTTP app every service starts from: /health, /ready, /metrics, request metrics and a
SERVER span per request (continuing an incoming W3C `traceparent`, echoed in the response)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from infra.http_errors import BodySizeLimit, install_error_handlers
from infra.observability import tracing
from infra.observability.metrics import HTTP_DURATION, HTTP_REQUESTS
from infra.readiness import Readiness

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_http_app(service: str, lifespan: Lifespan, description: str = "") -> FastAPI:
    app = FastAPI(title=f"{service} service", description=description, lifespan=lifespan)

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
        return JSONResponse(readiness.body(), status_code=200 if readiness.ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def observe_request(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500
        # Named once routing recorded the template; the handler (and the outbox entries it
        # writes) runs under this span, so the events it causes join the caller's trace.
        with tracing.start_span(
            f"HTTP {request.method}",
            SpanKind.SERVER,
            parent=tracing.extract(request.headers),
            attributes={"http.request.method": request.method, "url.path": request.url.path},
        ) as span:
            try:
                response = await call_next(request)
                status = response.status_code
                tracing.inject(response.headers)
                return response
            finally:
                route = _route_template(request)
                _finish_span(span, request.method, route, status)
                HTTP_REQUESTS.labels(route, request.method, str(status)).inc()
                HTTP_DURATION.labels(route, request.method).observe(time.perf_counter() - started)

    install_error_handlers(app)
    app.add_middleware(BodySizeLimit)
    return app


def _route_template(request: Request) -> str:
    """The matched route's path template (routing records it in the scope), so label values
    stay bounded: /orders/{order_id}, never one label per order."""
    route = request.scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")


def _finish_span(span: Span, method: str, route: str, status: int) -> None:
    span.update_name(f"HTTP {method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.status_code", status)
    span.set_attribute("http.response.status_code", status)
    # A 4xx is the client's doing, not a failure of this server (OpenTelemetry conventions).
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
