"""Helpers shared by the inventory end-to-end tests (no tests in here): a fresh pipeline of
one's own (FAST_RETRIES), SKUs of one's own, and orders walked to their end over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from tests.e2e.pipeline import Pipeline
from tests.integration.waiting import eventually

TERMINAL = ("CONFIRMED", "REJECTED", "CANCELLED")
PLACE_ATTEMPTS = 10
ADMIN = {"Authorization": "Bearer dev-admin-token"}  # the development default
Mongo = AsyncMongoClient[dict[str, Any]]
# Short retry tiers keep tok_flaky (two transient failures) to a few seconds.
FAST_RETRIES = {"AMQP_RETRY_DELAYS_MS": "[500,1000,2000]", "OUTBOX_POLL_INTERVAL_S": "0.5"}


def unique_sku(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}".upper()


class Shop:
    """One customer's view of a pipeline over HTTP, checked against what MongoDB stores."""

    def __init__(
        self, http: httpx.AsyncClient, mongo: Mongo, pipeline: Pipeline, auth: dict[str, str]
    ) -> None:
        self.http, self.mongo, self.pipeline, self.auth = http, mongo, pipeline, auth

    def db(self, service: str) -> Any:
        return self.mongo[self.pipeline.database(service)]

    async def add_skus(self, levels: dict[str, int]) -> None:
        """SKUs of the test's own, written straight into MongoDB (cold in the cache)."""
        await self.db("inventory")["stock"].insert_many(
            [
                {"_id": sku, "name": sku.lower(), "price_cents": 100 + n, "available": level}
                | {"reserved": 0, "version": 1}
                for n, (sku, level) in enumerate(levels.items())
            ]
        )

    async def level(self, sku: str) -> tuple[int, int]:
        """(available, version) as stored."""
        document = await self.db("inventory")["stock"].find_one({"_id": sku})
        assert document is not None
        return int(document["available"]), int(document["version"])

    async def stock_endpoint(self, sku: str) -> tuple[int, int, str]:
        """(available, version, X-Cache) as GET /stock/{sku} answers."""
        response = await self.http.get(f"{self.pipeline.url('inventory')}/stock/{sku}")
        assert response.status_code == 200, response.text
        body = response.json()
        return int(body["available"]), int(body["version"]), response.headers["X-Cache"]

    async def place(self, items: list[tuple[str, int]], method: str) -> str:
        """Like a careful client: under load the API may answer 503 (retry after a second)
        or a reused keep-alive connection may be closed under the request (retry at once);
        the Idempotency-Key makes either retry safe (never a second order)."""
        headers = {**self.auth, "Idempotency-Key": str(uuid.uuid4())}
        body = {"items": [{"sku": s, "quantity": q} for s, q in items], "payment_method": method}
        url = f"{self.pipeline.url('order')}/orders"
        for attempt in range(1, PLACE_ATTEMPTS + 1):
            try:
                response = await self.http.post(url, headers=headers, json=body)
            except httpx.TransportError:
                if attempt == PLACE_ATTEMPTS:
                    raise
                continue
            if response.status_code != 503:
                break
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        assert response.status_code in (200, 202), response.text
        return str(response.json()["order_id"])

    async def settled(self, order_id: str) -> dict[str, Any]:
        """The order once terminal and, if cancelled, once its stock is back (the order is
        told before the inventory has released)."""
        url = f"{self.pipeline.url('order')}/orders/{order_id}"

        async def terminal() -> dict[str, Any] | None:
            body: dict[str, Any] = (await self.http.get(url, headers=self.auth)).json()
            return body if body["status"] in TERMINAL else None

        order: dict[str, Any] = await eventually(terminal, timeout_s=45, interval_s=0.1)
        if order["status"] == "CANCELLED":
            await eventually(lambda: self.reservation_is(order_id, "RELEASED"))
        return order

    async def reservation_is(self, order_id: str, status: str) -> bool:
        document = await self.db("inventory")["reservations"].find_one({"_id": order_id})
        return document is not None and document["status"] == status
