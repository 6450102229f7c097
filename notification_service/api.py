"""Notification HTTP API: what was sent about an order."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from notification_service.adapters.store import MongoNotificationStore

router = APIRouter()


def get_store(request: Request) -> MongoNotificationStore:
    store: MongoNotificationStore = request.app.state.deps
    return store


@router.get("/notifications")
async def notifications(
    store: Annotated[MongoNotificationStore, Depends(get_store)],
    order_id: Annotated[str, Query(min_length=1, max_length=64)],
) -> list[dict[str, Any]]:
    return [
        {
            "order_id": d["order_id"],
            "customer_id": d["customer_id"],
            "kind": d["kind"],
            "channel": d["channel"],
            "message": d["message"],
            "created_at": d["created_at"].isoformat(),
        }
        for d in await store.for_order(order_id)
    ]
