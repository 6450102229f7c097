"""Typed dependencies of the order API: the adapters and the authenticated customer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from infra.http_errors import ApiError
from infra.observability.metrics import RATE_LIMITED
from infra.persistence.rate_limits import Bucket
from infra.persistence.sessions import SessionCheck
from order_service.wiring import OrderServiceDeps


# Every dependency is `async def` even when it awaits nothing: FastAPI runs a plain `def` in a
# worker thread, a thread hop per request (tests/unit/test_no_worker_threads_per_request.py).
async def get_deps(request: Request) -> OrderServiceDeps:
    deps: OrderServiceDeps = request.app.state.deps
    return deps


Deps = Annotated[OrderServiceDeps, Depends(get_deps)]
_BEARER = {"WWW-Authenticate": "Bearer"}


# A security scheme, not a header parameter: OpenAPI clients and fuzzers then know it is the
# credential. auto_error=False so a missing token gets our error shape.
_bearer = HTTPBearer(auto_error=False, description="the token from POST /sessions")


async def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str:
    if credentials is None or not credentials.credentials.strip():
        raise ApiError(401, "unauthenticated", "missing bearer token", _BEARER)
    return credentials.credentials.strip()


Token = Annotated[str, Depends(bearer_token)]


async def current_customer(deps: Deps, token: Token) -> str:
    customer_id = await deps.sessions.customer_for(token)
    if customer_id is None:
        raise session_refused()
    return customer_id


CustomerId = Annotated[str, Depends(current_customer)]


def session_refused() -> ApiError:
    return ApiError(401, "session_expired", "unknown or expired session", _BEARER)


@dataclass(frozen=True)
class Caller:
    """Whose request this is. `check` is set when the customer comes from this process's
    memory of the token, unverified: the request's admission script must verify it."""

    customer_id: str
    check: SessionCheck | None


async def caller(deps: Deps, token: Token) -> Caller:
    """The customer without a round trip of its own when this process has seen the token
    before (the admission then checks the session), else read and renewed as for any route."""
    check = deps.sessions.remembered(token)
    if check is not None:
        return Caller(check.customer_id, check)
    return Caller(await current_customer(deps, token), None)


CheckedCaller = Annotated[Caller, Depends(caller)]


async def client_address(request: Request) -> str:
    """The peer's address. uvicorn replaces it with X-Forwarded-For's only when the peer is a
    proxy listed in FORWARDED_ALLOW_IPS (none by default: infra.service), so a client cannot
    pick the bucket it is counted in."""
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]


async def within_limits(deps: OrderServiceDeps, action: str, buckets: list[Bucket]) -> None:
    """Count the request in its rate-limit buckets, or refuse it with 429 and Retry-After."""
    wait = await deps.limiter.hit(action, buckets)
    if wait is not None:
        raise rate_limited(action, wait)


def rate_limited(action: str, wait_s: int) -> ApiError:
    """The 429 of a full rate-limit bucket (counted in the metrics)."""
    RATE_LIMITED.labels(action).inc()
    return ApiError(
        429, "rate_limited", f"too many {action} requests; retry later",
        {"Retry-After": str(wait_s)},
    )  # fmt: skip
