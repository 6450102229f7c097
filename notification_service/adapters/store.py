"""Notifications in MongoDB; the `<order>:<kind>` id makes recording them idempotent."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from notification_service.domain.model import Notification

Document = dict[str, Any]


class MongoNotificationStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def create_indexes(self) -> None:
        await self._collection.create_index("order_id")

    async def add(self, notification: Notification) -> bool:
        """False if this order already has a notification of this kind."""
        try:
            await self._collection.insert_one(
                {
                    "_id": notification.key,
                    "order_id": notification.order_id,
                    "customer_id": notification.customer_id,
                    "kind": notification.kind,
                    "channel": notification.channel,
                    "message": notification.message,
                    "created_at": notification.created_at,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def for_order(self, order_id: str) -> list[Document]:
        cursor = self._collection.find({"order_id": order_id}, sort=[("created_at", 1)])
        return [d async for d in cursor]
