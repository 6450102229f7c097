"""Writing what a test needs in MongoDB, and reading what it stored."""

from __future__ import annotations

import uuid
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase


async def stored(db: AsyncDatabase[dict[str, Any]], collection: str, key: str) -> dict[str, Any]:
    """The document `key` of `collection`; it must exist."""
    document = await db[collection].find_one({"_id": key})
    assert document is not None
    return document


async def new_sku(db: AsyncDatabase[dict[str, Any]], available: int, prefix: str = "X") -> str:
    """A stock document of the test's own (`available` units at 100 cents); its SKU."""
    sku = f"{prefix}-{uuid.uuid4().hex[:8]}".upper()
    await db["stock"].insert_one(
        {
            "_id": sku,
            "name": prefix.lower(),
            "price_cents": 100,
            "available": available,
            "version": 1,
        }
    )
    return sku
