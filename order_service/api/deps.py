"""Typed dependencies of the order API: the adapters and the authenticated customer."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from infra.http_errors import ApiError
from order_service.wiring import OrderServiceDeps


def get_deps(request: Request) -> OrderServiceDeps:
    deps: OrderServiceDeps = request.app.state.deps
    return deps


Deps = Annotated[OrderServiceDeps, Depends(get_deps)]
_BEARER = {"WWW-Authenticate": "Bearer"}


# A security scheme, not a header parameter: OpenAPI clients and fuzzers then know it is the
# credential. auto_error=False so a missing token gets our error shape.
_bearer = HTTPBearer(auto_error=False, description="the token from POST /sessions")


def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str:
    if credentials is None or not credentials.credentials.strip():
        raise ApiError(401, "unauthenticated", "missing bearer token", _BEARER)
    return credentials.credentials.strip()


Token = Annotated[str, Depends(bearer_token)]


async def current_customer(deps: Deps, token: Token) -> str:
    customer_id = await deps.sessions.customer_for(token)
    if customer_id is None:
        raise ApiError(401, "session_expired", "unknown or expired session", _BEARER)
    return customer_id


CustomerId = Annotated[str, Depends(current_customer)]
