"""Notification HTTP API: what the customer was told about an order, and how."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from infra.http_errors import error_responses
from notification_service.adapters.store import MongoNotificationStore
from notification_service.domain.model import Notification, NotificationStatus

router = APIRouter(tags=["notifications"])


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


def get_store(request: Request) -> MongoNotificationStore:
    store: MongoNotificationStore = request.app.state.deps
    return store


@router.get("/notifications", responses=error_responses(422, 503))
async def notifications(
    store: Annotated[MongoNotificationStore, Depends(get_store)],
    order_id: Annotated[str, Query(min_length=1, max_length=64)],
) -> list[NotificationOut]:
    """The notifications recorded for an order, oldest first. `pending` ones are being sent
    (or retried); `channel` is the one chosen, and once `sent` the one used."""
    return [NotificationOut.of(n) for n in await store.for_order(order_id)]
