"""Contacts in MongoDB (`contacts`, `_id` = customer id), built from two event streams.

Each event is one upsert, so either may come first. A preference is written only if it is newer
than the stored one (a condition in the update, not a read before it), so a late, older
preference can never overwrite a newer one, whatever the interleaving.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from infra.persistence.batching import BatchedReads
from notification_service.domain.contacts import CHANNELS, Contact, Preference

Document = dict[str, Any]


class MongoContactStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        # Concurrent deliveries' reads share round trips.
        self._reads = BatchedReads(collection)

    async def get(self, customer_id: str) -> Contact | None:
        document = await self._reads.find_one(customer_id)
        return None if document is None else _from_document(document)

    async def register(self, customer_id: str, email: str, name: str) -> None:
        await self._upsert({"_id": customer_id}, {"$set": {"email": email, "name": name}})

    async def prefer(self, customer_id: str, preference: Preference) -> None:
        # `$lt`: an equal time is this same preference redelivered; nothing to change.
        older = {"$or": [{"preference_at": None}, {"preference_at": {"$lt": preference.at}}]}
        fields = {
            "channel": preference.channel,
            "webhook_url": preference.webhook_url,
            "preference_at": preference.at,
        }
        await self._upsert({"_id": customer_id, **older}, {"$set": fields})

    async def _upsert(self, query: Document, update: Document) -> None:
        try:
            await self._collection.update_one(query, update, upsert=True)
        except DuplicateKeyError:
            # The contact exists and the query did not match it: either its preference is
            # newer (the update below matches nothing either), or the other event created
            # it between our match and our insert (the update below applies).
            await self._collection.update_one(query, update)


def _from_document(document: Document) -> Contact:
    channel = document.get("channel")
    preference = None
    if channel in CHANNELS and document.get("preference_at") is not None:
        preference = Preference(channel, document.get("webhook_url"), document["preference_at"])
    return Contact(
        customer_id=document["_id"],
        email=document.get("email"),
        name=document.get("name"),
        preference=preference,
    )
