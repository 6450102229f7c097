"""The epoch of the stock collection, which every stock cache entry carries.

A database that goes back in time (a restore from backup, a reseed into a fresh database)
repeats stock versions the cache has already seen, and the cache, which keeps an entry only if
its version is newer, then served the old levels and refused the new ones until the entries
expired (300 s). The epoch is the stock collection's UUID, which MongoDB assigns when the
collection is created: `mongorestore --drop`, a dropped and reseeded collection or a new
database all get a new one, and the cache neither serves nor keeps entries of another epoch.

Not covered: documents rewritten in place inside the same collection (a restore without
`--drop`, a replica-set rollback); drop the collection when restoring, or delete the
`stock:*` keys.

Read from MongoDB at most every `refresh_s`, so the cache costs no database round trip per
request; a change is seen within that bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

NO_COLLECTION = "none"


class StockEpoch:
    def __init__(
        self,
        db: AsyncDatabase[Any],
        collection: str = "stock",
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._collection = collection
        self._refresh_s = refresh_s
        self._clock = clock
        self._value: str | None = None
        self._due = 0.0

    async def current(self) -> str:
        """The epoch now; the last one read if MongoDB does not answer (None before any)."""
        if self._value is None or self._clock() >= self._due:
            try:
                self._value = await self._read()
                self._due = self._clock() + self._refresh_s
            except PyMongoError:
                if self._value is None:
                    raise
        return self._value

    async def _read(self) -> str:
        cursor = await self._db.list_collections(filter={"name": self._collection})
        for info in await cursor.to_list():
            uuid = info.get("info", {}).get("uuid")
            if uuid is not None:
                return bytes(uuid).hex()
        return NO_COLLECTION
