"""Notification HTTP API: what the customer was told about an order, and how.

Only for the customer who placed the order (their session token from the order service, read
from the same Redis) or an internal caller with NOTIFICATION_INTERNAL_TOKEN. Another
customer's order looks like one without notifications, so order ids cannot be probed.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from infra.http_errors import ApiError, error_responses
from notification_service.domain.model import Notification, NotificationStatus
from notification_service.wiring import NotificationDeps

router = APIRouter(tags=["notifications"])
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_bearer = HTTPBearer(
    auto_error=False, description="a session token from the order service's POST /sessions"
)


class NotificationOut(BaseModel):
    order_id: str
    customer_id: str | None
    kind: str
    status: NotificationStatus
    channel: str
    message: str
    created_at: datetime
    sent_at: datetime | None
    attempts: int

    @classmethod
    def of(cls, notification: Notification) -> NotificationOut:
        return cls(
            order_id=notification.order_id or "",
            customer_id=notification.customer_id,
            kind=notification.kind,
            status=notification.status,
            channel=notification.channel,
            message=notification.message,
            created_at=notification.created_at,
            sent_at=notification.sent_at,
            attempts=notification.attempts,
        )


async def get_deps(request: Request) -> NotificationDeps:
    deps: NotificationDeps = request.app.state.deps
    return deps


Deps = Annotated[NotificationDeps, Depends(get_deps)]


async def caller(
    deps: Deps,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str | None:
    """The calling customer's id, or None for an internal caller; 401 for anyone else."""
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise ApiError(401, "unauthenticated", "missing bearer token", _CHALLENGE)
    internal = deps.internal_token
    if internal is not None and hmac.compare_digest(
        token.encode(), internal.get_secret_value().encode()
    ):
        return None
    customer_id = await deps.sessions.customer_for(token)
    if customer_id is None:
        raise ApiError(401, "session_expired", "unknown or expired session", _CHALLENGE)
    return customer_id


@router.get("/notifications", responses=error_responses(401, 422, 503))
async def notifications(
    deps: Deps,
    customer_id: Annotated[str | None, Depends(caller)],
    order_id: Annotated[str, Query(min_length=1, max_length=64)],
) -> list[NotificationOut]:
    """The notifications recorded for one of the caller's orders, oldest first. `pending`
    ones are being sent (or retried); `channel` is the one chosen, and once `sent` the one
    used."""
    found = await deps.store.for_order(order_id, customer_id)
    return [NotificationOut.of(n) for n in found]
