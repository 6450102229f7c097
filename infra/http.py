"""The HTTP app every service starts from: /health, /ready, /metrics and request metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError
from starlette.routing import Match

from infra.observability.metrics import HTTP_DURATION, HTTP_REQUESTS

log = logging.getLogger(__name__)
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_http_app(service: str, lifespan: Lifespan, description: str = "") -> FastAPI:
    app = FastAPI(title=f"{service} service", description=description, lifespan=lifespan)

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """The process is up and its event loop answers."""
        return {"status": "ok", "service": service}

    @app.get("/ready", tags=["operations"], responses={503: {"description": "not ready"}})
    async def ready(request: Request) -> JSONResponse:
        """Broker, MongoDB and Redis are reachable from this process."""
        runtime = getattr(request.app.state, "runtime", None)
        checks = await runtime.readiness() if runtime is not None else {"started": False}
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        route = _route_template(request)
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            HTTP_REQUESTS.labels(route, request.method, str(status)).inc()
            HTTP_DURATION.labels(route, request.method).observe(time.perf_counter() - started)

    @app.exception_handler(PyMongoError)
    @app.exception_handler(RedisError)
    async def backing_service_down(request: Request, error: Exception) -> JSONResponse:
        # A database or cache outage is not the client's fault and is worth retrying.
        log.warning("%s %s failed: %s: %s", request.method, request.url.path,
                    type(error).__name__, error)  # fmt: skip
        response = json_error(503, "unavailable", "a backing service is unavailable; retry")
        response.headers["Retry-After"] = "1"
        return response

    return app


def _route_template(request: Request) -> str:
    """The matched route's path template, so label values stay bounded."""
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


def json_error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)
