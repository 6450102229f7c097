"""Natural batching of single-document writes and reads by `_id` ("group commit").

While one round trip of a collection is in flight, the writes (or reads) that arrive for it
wait, and go together in the next one: one `bulk_write` (unordered) or one `find` by `$in`.
Nothing is delayed when the collection is idle (the first call goes at once, alone); under
load, one round trip carries what many concurrent handlers asked for. Inserts and updates are
batched apart, each with its own round trip in flight: an insert is a new document's first
write, often on a request's path (POST /orders), and a batch of updates in flight would
otherwise hold it up for a whole round trip. Each caller still awaits
its own write and gets its own outcome (inserted, matched, DuplicateKeyError, the connection's
error), so acknowledging a message after its effect means what it meant before.

Only writes keyed by `_id` go through here, never inside a transaction. A guarded update's
"matched" is per document, which an unordered bulk write reports only as a total: when the
total says some did not match, each update's own `write_token` (set by the update itself) is
read back to tell which did. Two updates of one document never share a batch, so the token
read is unambiguous.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

Document = dict[str, Any]
R = TypeVar("R")
WRITE_TOKEN = "write_token"
DUPLICATE_KEY = 11000
# A batch is one command; past this, the rest wait for the next round trip.
MAX_BATCH = 100
# Unique across processes and restarts (a pid is not: replicas on two hosts, or a restart,
# can share one), and across the collections of a process: one counter for all.
_PROCESS = os.urandom(8).hex()
_TOKENS = (f"{_PROCESS}.{n:x}" for n in itertools.count())


@dataclass
class Call(Generic[R]):
    """One caller's request in a batch: its key, and the future its caller awaits."""

    key: Any  # a document's _id, say: calls with equal keys never share a batch
    future: asyncio.Future[R] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def resolve(self, result: R) -> None:
        if not self.future.done():  # its caller may have been cancelled meanwhile
            self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)

    def cancel(self) -> None:
        self.future.cancel()  # a no-op once done


C = TypeVar("C", bound=Call[Any])


class Batches(Generic[C]):
    """Queues calls; one task sends what has queued whenever no round trip is in flight.
    Calls with equal keys never share a batch. `run` settles each call of its batch; if it
    raises instead, every call of the batch fails with that error."""

    def __init__(self, run: Callable[[list[C]], Awaitable[None]], max_batch: int) -> None:
        self._run = run
        self._max_batch = max_batch
        self._queue: list[C] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, call: C) -> Any:
        self._queue.append(call)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all())
        return await call.future

    async def _send_all(self) -> None:
        batch: list[C] = []
        try:
            while self._queue:
                batch = self._take()
                try:
                    await self._run(batch)
                except Exception as error:  # every caller of the batch gets it
                    for call in batch:
                        call.fail(error)
        except asyncio.CancelledError:
            for call in [*batch, *self._queue]:
                call.cancel()
            self._queue.clear()
            raise
        finally:
            self._sender = None

    def _take(self) -> list[C]:
        batch: list[C] = []
        keys: set[Any] = set()
        rest: list[C] = []
        for call in self._queue:
            if len(batch) < self._max_batch and call.key not in keys:
                batch.append(call)
                keys.add(call.key)
            else:
                rest.append(call)
        self._queue = rest
        return batch


@dataclass
class _Write(Call[bool]):
    operation: InsertOne[Document] | UpdateOne = field(kw_only=True)
    token: str | None = field(default=None, kw_only=True)  # a guarded update's own token
    upsert: bool = field(default=False, kw_only=True)


class BatchedWrites:
    """`insert_one` and `update_one` by `_id` on one collection: inserts batched while an insert
    round trip is in flight, updates while an update round trip is. Concurrent calls have no
    order between them either way; two on one document never share a batch."""

    def __init__(self, collection: AsyncCollection[Document], max_batch: int = MAX_BATCH) -> None:
        self._collection = collection
        self._inserts: Batches[_Write] = Batches(self._write, max_batch)
        self._updates: Batches[_Write] = Batches(self._write, max_batch)

    async def insert_one(self, document: Document) -> None:
        """Raises DuplicateKeyError if a document with its `_id` exists."""
        await self._inserts.submit(_Write(document["_id"], operation=InsertOne(document)))

    async def update_one(self, query: Document, update: Document, *, upsert: bool = False) -> bool:
        """Whether a document matched `query` (with `upsert`: True once it matched or was
        inserted; a DuplicateKeyError when the upsert's insert met an existing `_id`)."""
        if upsert:
            operation = UpdateOne(query, update, upsert=True)
            write = _Write(query["_id"], operation=operation, upsert=True)
        else:
            token = next(_TOKENS)
            marked = {**update, "$set": {**update.get("$set", {}), WRITE_TOKEN: token}}
            write = _Write(query["_id"], operation=UpdateOne(query, marked), token=token)
        result: bool = await self._updates.submit(write)
        return result

    async def _write(self, batch: list[_Write]) -> None:
        errors: dict[int, Document] = {}
        try:
            result = await self._collection.bulk_write([w.operation for w in batch], ordered=False)
            matched, upserted = result.matched_count, len(result.upserted_ids or {})
        except BulkWriteError as error:
            details = error.details
            if details.get("writeConcernErrors"):
                raise
            errors = {e["index"]: e for e in details.get("writeErrors", [])}
            matched, upserted = details.get("nMatched", 0), len(details.get("upserted", []))
        guarded: list[_Write] = []
        for index, write in enumerate(batch):
            if index in errors:
                write.fail(_error_of(errors[index]))
            elif write.token is None:
                write.resolve(True)
                if write.upsert:
                    matched -= 1  # an upsert that did not insert matched
            else:
                guarded.append(write)
        matched += upserted  # the loop took one per successful upsert, inserted ones too
        if matched == len(guarded):
            for write in guarded:
                write.resolve(True)
        else:
            await self._resolve_by_token(guarded)

    async def _resolve_by_token(self, guarded: Sequence[_Write]) -> None:
        cursor = self._collection.find({"_id": {"$in": [w.key for w in guarded]}}, {WRITE_TOKEN: 1})
        tokens = {d["_id"]: d.get(WRITE_TOKEN) async for d in cursor}
        for write in guarded:
            write.resolve(tokens.get(write.key) == write.token)


def _error_of(error: Document) -> Exception:
    if error.get("code") == DUPLICATE_KEY:
        return DuplicateKeyError(error.get("errmsg", "duplicate key"), DUPLICATE_KEY, error)
    return WriteError(error.get("errmsg", "write failed"), error.get("code"), error)


class BatchedReads:
    """`find_one` by `_id` with one projection, batched into `find` by `$in`."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        projection: Document | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._collection = collection
        self._projection = projection
        self._batches: Batches[Call[Document | None]] = Batches(self._read, max_batch)

    async def find_one(self, document_id: Any) -> Document | None:
        found: Document | None = await self._batches.submit(Call(document_id))
        return found

    async def _read(self, batch: list[Call[Document | None]]) -> None:
        query = {"_id": {"$in": [call.key for call in batch]}}
        found = {d["_id"]: d async for d in self._collection.find(query, self._projection)}
        for call in batch:
            call.resolve(found.get(call.key))
