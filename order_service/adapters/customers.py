"""Customer accounts in MongoDB; emails are unique (a unique index decides, not a read).

A customer document carries an outbox too: registrations and notification preferences are
published (CustomerRegistered, NotificationPreferenceChanged) so the notification service can
reach the customer without asking this service.
"""

from __future__ import annotations

import uuid
from typing import Any

from pymongo.errors import DuplicateKeyError

from contracts.events import CustomerRegistered, NotificationPreferenceChanged
from infra.persistence.outbox_write import OutboxDocuments
from order_service.ports import EmailTaken

Document = dict[str, Any]


class MongoCustomerStore(OutboxDocuments):
    async def create_indexes(self) -> None:
        await self._collection.create_index("email", unique=True)

    async def add(self, email: str, name: str, password_hash: str) -> str:
        customer_id = str(uuid.uuid4())
        registered = CustomerRegistered(customer_id=customer_id, email=email.lower(), name=name)
        events = self._outbox.write(customer_id, [registered])
        try:
            await self._collection.insert_one(
                {
                    "_id": customer_id,
                    "email": email.lower(),
                    "name": name,
                    "password_hash": password_hash,
                    "notification_channel": "email",
                    "created_at": self._clock(),
                    **events.fields(),
                }
            )
        except DuplicateKeyError as error:
            raise EmailTaken(email) from error
        events.landed()
        return customer_id

    async def by_email(self, email: str) -> Document | None:
        return await self._collection.find_one({"email": email.lower()}, {"outbox": 0})

    async def set_password_hash(self, customer_id: str, password_hash: str) -> None:
        await self._collection.update_one(
            {"_id": customer_id}, {"$set": {"password_hash": password_hash}}
        )

    async def set_notification_preference(
        self, customer_id: str, channel: str, webhook_url: str | None
    ) -> None:
        """Record the preference and its event. The outbox stays bounded (the registration and
        this preference): earlier preference events are pulled first, sent or not, since this
        one supersedes them (each carries the whole preference, and the newest wins)."""
        changed = NotificationPreferenceChanged(
            customer_id=customer_id,
            channel=channel,  # validated by the API model
            webhook_url=webhook_url,
        )
        events = self._outbox.write(customer_id, [changed])
        await self._collection.update_one(
            {"_id": customer_id}, {"$pull": {"outbox": {"event_type": changed.event_type}}}
        )
        update = events.update(
            {"$set": {"notification_channel": channel, "webhook_url": webhook_url}}
        )
        await self._collection.update_one({"_id": customer_id}, update)
        events.landed()
