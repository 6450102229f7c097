"""Notifications in MongoDB, one document per `_id` key (`<order>:<kind>`), so recording one
twice finds the first. The send is claimed with a lease (`lease_until`) so two copies of an
event handled at once cannot both send, and a claim left by a dead process expires. A new
record is inserted already claimed by the delivery that wrote it: record, send, mark sent is
two writes. The lease must stay shorter than the retry ladder (see handlers.Delivery), or a
claim left by a delivery cut off after the insert would outlive every retry of it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from infra.messaging.errors import RetryLater
from infra.persistence.batching import BatchedWrites
from notification_service.domain.model import Notification, NotificationStatus

Document = dict[str, Any]
MAX_ERROR_CHARS = 1000


class MongoNotificationStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        # Concurrent deliveries' writes share round trips.
        self._writes = BatchedWrites(collection)

    async def create_indexes(self) -> None:
        await self._collection.create_index("order_id")

    async def record(
        self, notification: Notification, now: datetime, lease_s: float
    ) -> tuple[Notification, bool]:
        """Insert it pending and already claimed by the caller (one write for the common
        case); if one with its key exists, return that one, unclaimed."""
        claimed = replace(notification, attempts=notification.attempts + 1)
        document = {**_to_document(claimed), "lease_until": now + timedelta(seconds=lease_s)}
        try:
            await self._writes.insert_one(document)
        except DuplicateKeyError:
            existing = await self._collection.find_one({"_id": notification.key})
            if existing is None:  # removed by hand in between: start over on the redelivery
                raise RetryLater(f"notification {notification.key} vanished") from None
            return _from_document(existing), False
        return claimed, True

    async def claim(self, key: str, now: datetime, lease_s: float) -> bool:
        return await self._writes.update_one(
            {
                "_id": key,
                "status": NotificationStatus.PENDING.value,
                # None matches a missing field too: never claimed, or released.
                "$or": [{"lease_until": None}, {"lease_until": {"$lte": now}}],
            },
            {
                "$set": {"lease_until": now + timedelta(seconds=lease_s)},
                "$inc": {"attempts": 1},
            },
        )

    async def release(self, key: str, error: str) -> None:
        await self._writes.update_one(
            {"_id": key, "status": NotificationStatus.PENDING.value},
            {"$set": {"last_error": error[:MAX_ERROR_CHARS]}, "$unset": {"lease_until": ""}},
        )

    async def mark_sent(self, key: str, channel: str, at: datetime) -> None:
        sent = {"status": NotificationStatus.SENT.value, "channel": channel, "sent_at": at}
        await self._writes.update_one({"_id": key}, {"$set": sent, "$unset": {"lease_until": ""}})

    async def get(self, key: str) -> Notification | None:
        document = await self._collection.find_one({"_id": key})
        return None if document is None else _from_document(document)

    async def for_order(self, order_id: str, customer_id: str | None = None) -> list[Notification]:
        """The order's notifications; only the customer's own when `customer_id` is given."""
        query: Document = {"order_id": order_id}
        if customer_id is not None:
            query["customer_id"] = customer_id
        cursor = self._collection.find(query, sort=[("created_at", 1)])
        return [_from_document(d) async for d in cursor]


def _to_document(notification: Notification) -> Document:
    return {
        "_id": notification.key,
        "order_id": notification.order_id,
        "customer_id": notification.customer_id,
        "kind": notification.kind,
        "channel": notification.channel,
        "message": notification.message,
        "created_at": notification.created_at,
        "event_id": notification.event_id,
        "status": notification.status.value,
        "sent_at": notification.sent_at,
        "attempts": notification.attempts,
    }


def _from_document(document: Document) -> Notification:
    return Notification(
        key=document["_id"],
        order_id=document.get("order_id"),
        customer_id=document.get("customer_id"),
        kind=document["kind"],
        channel=document["channel"],
        message=document["message"],
        created_at=document["created_at"],
        event_id=document.get("event_id"),
        # Records from before send-once had no status; they were inserted right before the
        # send that nothing retried, so they count as sent.
        status=NotificationStatus(document.get("status", NotificationStatus.SENT.value)),
        sent_at=document.get("sent_at"),
        attempts=document.get("attempts", 0),
    )
