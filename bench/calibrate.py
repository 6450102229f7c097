"""How many simple operations per second the MongoDB server answers: the yardstick of the
DB-bound ceiling (ops/s ÷ MongoDB round trips per order).

A third each of insert_one, find_one by _id and update_one by _id ($inc), from a few
concurrent callers, on a scratch collection of the same server; the mix is about what the
services do (point reads and writes by key). Bounded by time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pymongo import AsyncMongoClient


async def mongo_ops_per_s(
    mongo_url: str, database: str, seconds: float = 3.0, concurrency: int = 4
) -> float:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        collection = client[database]["calibration"]
        await collection.delete_many({})
        await collection.insert_many([{"_id": f"k{i}", "n": 0} for i in range(concurrency)])
        done = 0
        end = time.perf_counter() + seconds

        async def caller(i: int) -> None:
            nonlocal done
            key = f"k{i}"
            step = 0
            while time.perf_counter() < end:
                step += 1
                if step % 3 == 0:
                    await collection.insert_one({"caller": i, "step": step})
                elif step % 3 == 1:
                    await collection.find_one({"_id": key})
                else:
                    await collection.update_one({"_id": key}, {"$inc": {"n": 1}})
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
        await client.drop_database(database)
        return done / elapsed
    finally:
        await client.close()
