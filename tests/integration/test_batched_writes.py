"""Natural batching against the real MongoDB wire server: each caller gets its own outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from infra.persistence.batching import WRITE_TOKEN, BatchedReads, BatchedWrites

pytestmark = pytest.mark.integration
Database = AsyncDatabase[dict[str, Any]]


class _Commands(monitoring.CommandListener):
    """The commands started, and every start and success in order. Called in the event
    loop's thread (the async client's), so it may set the loop's events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.update_started = asyncio.Event()

    @property
    def names(self) -> list[str]:
        return [name for what, name in self.events if what == "started"]

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.events.append(("started", event.command_name))
        if event.command_name == "update":
            self.update_started.set()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.events.append(("succeeded", event.command_name))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_concurrent_inserts_share_round_trips_and_a_duplicate_fails_alone(
    mongo_db: Database,
) -> None:
    collection = mongo_db["batched_inserts"]
    await collection.insert_one({"_id": "taken"})
    writes = BatchedWrites(collection)
    ids = [f"doc-{n}" for n in range(30)]
    results = await asyncio.gather(
        *(writes.insert_one({"_id": i, "n": n}) for n, i in enumerate(ids)),
        writes.insert_one({"_id": "taken"}),
        return_exceptions=True,
    )
    assert results[:30] == [None] * 30
    assert isinstance(results[30], DuplicateKeyError)
    assert await collection.count_documents({"_id": {"$in": ids}}) == 30


async def test_guarded_updates_report_each_match_even_when_some_miss(mongo_db: Database) -> None:
    collection = mongo_db["batched_updates"]
    await collection.insert_many([{"_id": n, "version": 1} for n in range(10)])
    writes = BatchedWrites(collection)
    # Even ids guard on the right version, odd ones on a stale one.
    matched = await asyncio.gather(
        *(
            writes.update_one(
                {"_id": n, "version": 1 if n % 2 == 0 else 7}, {"$inc": {"version": 1}}
            )
            for n in range(10)
        )
    )
    assert matched == [n % 2 == 0 for n in range(10)]
    versions = {d["_id"]: d["version"] async for d in collection.find({})}
    assert versions == {n: 2 if n % 2 == 0 else 1 for n in range(10)}


async def test_two_updates_of_one_document_never_share_a_batch(mongo_db: Database) -> None:
    collection = mongo_db["batched_same_doc"]
    await collection.insert_one({"_id": "one", "version": 1})
    writes = BatchedWrites(collection)
    # Both guard on version 1: exactly one may win, and each must learn whether it did.
    first, second = await asyncio.gather(
        writes.update_one({"_id": "one", "version": 1}, {"$set": {"by": "first", "version": 2}}),
        writes.update_one({"_id": "one", "version": 1}, {"$set": {"by": "second", "version": 2}}),
    )
    assert (first, second) == (True, False)
    document = await collection.find_one({"_id": "one"})
    assert document is not None
    assert document["by"] == "first"
    assert WRITE_TOKEN in document


async def test_upserts_mixed_with_guarded_updates_and_inserts(mongo_db: Database) -> None:
    collection = mongo_db["batched_mixed"]
    await collection.insert_many([{"_id": "a", "settled": True}, {"_id": "b"}])
    writes = BatchedWrites(collection)
    unsettled = {"settled": {"$exists": False}}
    results = await asyncio.gather(
        # an upsert that meets a settled document: the insert collides
        writes.update_one({"_id": "a", **unsettled}, {"$setOnInsert": {"x": 1}}, upsert=True),
        # an upsert that matches, one that inserts
        writes.update_one({"_id": "b", **unsettled}, {"$setOnInsert": {"x": 1}}, upsert=True),
        writes.update_one({"_id": "c", **unsettled}, {"$setOnInsert": {"x": 1}}, upsert=True),
        writes.insert_one({"_id": "d"}),
        writes.update_one({"_id": "e", **unsettled}, {"$set": {"y": 1}}),  # no such document
        return_exceptions=True,
    )
    assert isinstance(results[0], DuplicateKeyError)
    assert list(results[1:]) == [True, True, None, False]


async def test_writes_while_one_is_in_flight_go_together(
    mongo_db: Database, mongo_url: str
) -> None:
    listener = _Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, event_listeners=[listener]
    )
    try:
        writes = BatchedWrites(client[mongo_db.name]["batched_count"])
        first = asyncio.create_task(writes.insert_one({"_id": 0}))
        await asyncio.sleep(0)  # the sender takes it and starts its round trip
        await asyncio.gather(first, *(writes.insert_one({"_id": n}) for n in range(1, 40)))
        # The other 39 queued while the first was in flight and went together.
        assert listener.names.count("insert") == 2
        assert await mongo_db["batched_count"].count_documents({}) == 40
    finally:
        await client.close()


async def test_an_insert_goes_out_while_a_batch_of_updates_is_in_flight(
    mongo_db: Database, mongo_url: str
) -> None:
    """A new order's insert (POST /orders) must not wait for the round trip of the updates
    that consumers of the same collection have in flight."""
    listener = _Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, event_listeners=[listener]
    )
    try:
        collection = client[mongo_db.name]["batched_lanes"]
        await collection.insert_many([{"_id": n, "version": 1} for n in range(50)])
        listener.events.clear()
        writes = BatchedWrites(collection)
        # A round trip long enough to submit an insert while it is in flight: 1 MB to write.
        payload = "x" * 20_000
        updates = asyncio.gather(
            *(writes.update_one({"_id": n}, {"$set": {"payload": payload}}) for n in range(50))
        )
        await listener.update_started.wait()
        await writes.insert_one({"_id": "new"})
        assert await updates == [True] * 50
        events = listener.events
        assert events.index(("started", "insert")) < events.index(("succeeded", "update"))
        assert await collection.count_documents({}) == 51
    finally:
        await client.close()


async def test_reads_by_id_batched_with_one_projection(mongo_db: Database) -> None:
    collection = mongo_db["batched_reads"]
    await collection.insert_many([{"_id": n, "v": n, "big": "x" * 100} for n in range(20)])
    reads = BatchedReads(collection, {"big": 0})
    found = await asyncio.gather(*(reads.find_one(n) for n in range(25)))
    assert found[:20] == [{"_id": n, "v": n} for n in range(20)]
    assert found[20:] == [None] * 5


async def test_a_guard_missed_is_not_taken_for_another_writers_token(mongo_db: Database) -> None:
    """Two writers of one collection in one process (two repositories, or replicas): the one
    whose guard misses must not read the other's token as its own."""
    collection = mongo_db["batched_two_writers"]
    await collection.insert_one({"_id": "doc", "version": 1})
    first, second = BatchedWrites(collection), BatchedWrites(collection)
    assert await first.update_one({"_id": "doc", "version": 1}, {"$set": {"version": 2}})
    assert not await second.update_one({"_id": "doc", "version": 1}, {"$set": {"version": 2}})
