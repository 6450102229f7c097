"""When did each order end, and how: the notification the customer got for it.

Two ways to read it:
- MongoSink (services started by the bench): waits on the notification count (one cheap
  `count` every half second, so the wait barely loads the database it measures), then reads
  every notification once.
- HttpSink (--reuse): GET /notifications?order_id= per order not yet seen, a few at a time.
Both bounded by a timeout; orders not notified by then are reported as such, not waited for.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx
from pymongo import AsyncMongoClient

from bench.load import ProgressBar
from infra.devstack.services import LOCAL_INTERNAL_TOKEN

POLL_S = 0.5
TERMINAL_KINDS = {
    "order_confirmed": "CONFIRMED",
    "order_rejected": "REJECTED",
    "order_cancelled": "CANCELLED",
}


@dataclass(frozen=True)
class Outcome:
    status: str  # CONFIRMED / REJECTED / CANCELLED
    recorded: float  # epoch seconds of the notification's created_at
    sent: float | None


class Sink(Protocol):
    async def collect(
        self, order_ids: list[str], expected_total: int, timeout_s: float
    ) -> dict[str, Outcome]: ...


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return None


def _outcome(document: dict[str, Any]) -> Outcome | None:
    status = TERMINAL_KINDS.get(str(document.get("kind")))
    recorded = _epoch(document.get("created_at"))
    if status is None or recorded is None:
        return None
    return Outcome(status, recorded, _epoch(document.get("sent_at")))


class MongoSink:
    def __init__(self, mongo_url: str, database: str) -> None:
        self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
        self._collection = self._client[database]["notifications"]

    async def collect(
        self, order_ids: list[str], expected_total: int, timeout_s: float
    ) -> dict[str, Outcome]:
        """`expected_total`: notifications in the database once these orders are done (every
        order placed so far gets exactly one)."""
        deadline = time.perf_counter() + timeout_s
        bar = ProgressBar("draining", expected_total)
        have = 0
        while time.perf_counter() < deadline:
            have = await self._collection.estimated_document_count()
            bar.update(have)
            if have >= expected_total:
                break
            await asyncio.sleep(POLL_S)
        bar.update(have, final=True)
        wanted = set(order_ids)
        found: dict[str, Outcome] = {}
        projection = {"order_id": 1, "kind": 1, "created_at": 1, "sent_at": 1}
        async for document in self._collection.find({}, projection):
            outcome = _outcome(document)
            if outcome is not None and document.get("order_id") in wanted:
                found[str(document["order_id"])] = outcome
        return found

    async def close(self) -> None:
        await self._client.close()


class HttpSink:
    def __init__(self, http: httpx.AsyncClient, notification_url: str, parallel: int = 8) -> None:
        self._http = http
        self._url = notification_url.rstrip("/")
        self._limit = asyncio.Semaphore(parallel)

    async def _one(self, order_id: str) -> Outcome | None:
        async with self._limit:
            try:
                response = await self._http.get(
                    f"{self._url}/notifications",
                    params={"order_id": order_id},
                    headers={"Authorization": f"Bearer {LOCAL_INTERNAL_TOKEN}"},
                )
            except httpx.HTTPError:
                return None
        if response.status_code != 200:
            return None
        outcomes = [o for o in map(_outcome, response.json()) if o is not None]
        return outcomes[0] if outcomes else None

    async def collect(
        self, order_ids: list[str], expected_total: int, timeout_s: float
    ) -> dict[str, Outcome]:
        deadline = time.perf_counter() + timeout_s
        bar = ProgressBar("draining", len(order_ids))
        found: dict[str, Outcome] = {}
        while time.perf_counter() < deadline:
            missing = [o for o in order_ids if o not in found]
            if not missing:
                break
            results = await asyncio.gather(*(self._one(o) for o in missing))
            found.update({o: r for o, r in zip(missing, results, strict=True) if r is not None})
            bar.update(len(found))
            if len(found) < len(order_ids):
                await asyncio.sleep(POLL_S)
        bar.update(len(found), final=True)
        return found

    async def close(self) -> None:
        pass
