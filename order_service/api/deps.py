"""Typed dependencies of the order API: the adapters and the authenticated customer."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from infra.http_errors import ApiError
from order_service.wiring import OrderServiceDeps


def get_deps(request: Request) -> OrderServiceDeps:
    deps: OrderServiceDeps = request.app.state.deps
    return deps


Deps = Annotated[OrderServiceDeps, Depends(get_deps)]
_BEARER = {"WWW-Authenticate": "Bearer"}


def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated", "missing bearer token", _BEARER)
    return token.strip()


Token = Annotated[str, Depends(bearer_token)]


async def current_customer(deps: Deps, token: Token) -> str:
    customer_id = await deps.sessions.customer_for(token)
    if customer_id is None:
        raise ApiError(401, "session_expired", "unknown or expired session", _BEARER)
    return customer_id


CustomerId = Annotated[str, Depends(current_customer)]
