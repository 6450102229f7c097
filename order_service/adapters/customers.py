"""Customer accounts in MongoDB; emails are unique (a unique index decides, not a read)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]


class EmailTaken(Exception):
    pass


class MongoCustomerStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def create_indexes(self) -> None:
        await self._collection.create_index("email", unique=True)

    async def add(self, email: str, name: str, password_hash: str) -> str:
        customer_id = str(uuid.uuid4())
        try:
            await self._collection.insert_one(
                {
                    "_id": customer_id,
                    "email": email.lower(),
                    "name": name,
                    "password_hash": password_hash,
                    "created_at": datetime.now(UTC),
                }
            )
        except DuplicateKeyError as error:
            raise EmailTaken(email) from error
        return customer_id

    async def by_email(self, email: str) -> Document | None:
        return await self._collection.find_one({"email": email.lower()})
