"""Reading what a test stored in MongoDB."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase


async def stored(db: AsyncDatabase[dict[str, Any]], collection: str, key: str) -> dict[str, Any]:
    """The document `key` of `collection`; it must exist."""
    document = await db[collection].find_one({"_id": key})
    assert document is not None
    return document
