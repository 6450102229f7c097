"""The whole pipeline, HTTP in, effects out: order state in MongoDB, stock, payments,
notifications. Each test uses its own SKUs so the stock arithmetic is exact."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from infra.devstack.services import LOCAL_INTERNAL_TOKEN
from infra.messaging.outbox_confirmations import unannounced_events
from tests.e2e.conftest import INITIAL_STOCK
from tests.e2e.pipeline import Pipeline
from tests.integration.waiting import eventually

pytestmark = pytest.mark.e2e
TERMINAL = {"CONFIRMED", "REJECTED", "CANCELLED"}
Mongo = AsyncMongoClient[dict[str, Any]]


class Shop:
    def __init__(self, http: httpx.AsyncClient, pipeline: Pipeline, mongo: Mongo) -> None:
        self.http, self.pipeline, self.mongo = http, pipeline, mongo

    def db(self, service: str) -> Any:
        return self.mongo[self.pipeline.database(service)]

    async def place(self, auth: dict[str, str], items: list[tuple[str, int]], method: str) -> str:
        response = await self.http.post(
            f"{self.pipeline.url('order')}/orders",
            headers=auth,
            json={"items": [{"sku": s, "quantity": q} for s, q in items], "payment_method": method},
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "PENDING"
        assert response.headers["Location"] == f"/orders/{body['order_id']}"
        return str(body["order_id"])

    async def settled(self, auth: dict[str, str], order_id: str) -> dict[str, Any]:
        async def terminal() -> dict[str, Any] | None:
            response = await self.http.get(
                f"{self.pipeline.url('order')}/orders/{order_id}", headers=auth
            )
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body if body["status"] in TERMINAL else None

        result: dict[str, Any] = await eventually(terminal, timeout_s=45, interval_s=0.1)
        return result

    async def stock(self, sku: str) -> int:
        document = await self.db("inventory")["stock"].find_one({"_id": sku})
        assert document is not None
        return int(document["available"])

    async def notifications(self, order_id: str) -> list[str]:
        """Kinds recorded in MongoDB, checked against the notification service's API."""

        async def recorded() -> list[str]:
            cursor = self.db("notification")["notifications"].find({"order_id": order_id})
            return [d["kind"] async for d in cursor]

        kinds: list[str] = await eventually(recorded)
        api = await self.http.get(
            f"{self.pipeline.url('notification')}/notifications",
            params={"order_id": order_id},
            headers={"Authorization": f"Bearer {LOCAL_INTERNAL_TOKEN}"},
        )
        assert sorted(n["kind"] for n in api.json()) == sorted(kinds)
        return kinds


@pytest.fixture
def shop(http: httpx.AsyncClient, pipeline: Pipeline, mongo: Mongo) -> Shop:
    return Shop(http, pipeline, mongo)


async def test_a_paid_order_is_confirmed(shop: Shop, auth: dict[str, str]) -> None:
    order_id = await shop.place(auth, [("SKU-0001", 2), ("SKU-0002", 1)], "tok_ok")
    order = await shop.settled(auth, order_id)

    assert order["status"] == "CONFIRMED"
    assert [h["status"] for h in order["history"]] == ["PENDING", "RESERVED", "PAID", "CONFIRMED"]
    prices = {line["sku"]: line["unit_price_cents"] for line in order["lines"]}
    assert order["total_cents"] == 2 * prices["SKU-0001"] + prices["SKU-0002"]
    orders = shop.db("order")["orders"]

    # OrderPlaced and OrderConfirmed both confirmed; the relay logs them in its next write.
    async def announced() -> bool:
        return await unannounced_events(orders, {"_id": order_id}) == []

    await eventually(announced, timeout_s=5)
    stored = await orders.find_one({"_id": order_id})
    assert stored["status"] == "CONFIRMED"
    assert [e["event_type"] for e in stored["outbox"]] == ["OrderPlaced", "OrderConfirmed"]
    assert await shop.stock("SKU-0001") == INITIAL_STOCK - 2
    assert await shop.stock("SKU-0002") == INITIAL_STOCK - 1
    payment = await shop.db("payment")["payments"].find_one({"_id": order_id})
    assert payment["status"] == "SUCCEEDED"
    assert payment["amount_cents"] == order["total_cents"]
    charge = await shop.db("payment")["gateway_charges"].find_one({"_id": f"order-{order_id}"})
    assert (charge["outcome"], charge["attempts"]) == ("captured", 1)
    assert await shop.notifications(order_id) == ["order_confirmed"]


async def test_an_order_beyond_the_stock_is_rejected_and_takes_nothing(
    shop: Shop, auth: dict[str, str]
) -> None:
    order_id = await shop.place(auth, [("SKU-0003", 1), ("SKU-0004", INITIAL_STOCK + 1)], "tok_ok")
    order = await shop.settled(auth, order_id)

    assert order["status"] == "REJECTED"
    assert "insufficient stock for SKU-0004" in order["history"][-1]["reason"]
    assert await shop.stock("SKU-0003") == INITIAL_STOCK  # all or nothing
    assert await shop.stock("SKU-0004") == INITIAL_STOCK
    reservation = await shop.db("inventory")["reservations"].find_one({"_id": order_id})
    assert reservation["status"] == "FAILED"
    assert await shop.db("payment")["payments"].find_one({"_id": order_id}) is None
    assert await shop.notifications(order_id) == ["order_rejected"]


async def test_a_declined_payment_cancels_and_gives_the_stock_back(
    shop: Shop, auth: dict[str, str]
) -> None:
    order_id = await shop.place(auth, [("SKU-0005", 4)], "tok_decline")
    order = await shop.settled(auth, order_id)

    assert order["status"] == "CANCELLED"
    assert order["history"][-1]["reason"] == "card declined"
    payment = await shop.db("payment")["payments"].find_one({"_id": order_id})
    assert (payment["status"], payment["reason"]) == ("FAILED", "card declined")

    async def released() -> bool:
        reservation = await shop.db("inventory")["reservations"].find_one({"_id": order_id})
        return bool(reservation["status"] == "RELEASED")

    await eventually(released)
    assert await shop.stock("SKU-0005") == INITIAL_STOCK
    assert await shop.notifications(order_id) == ["order_cancelled"]


async def test_a_flaky_gateway_is_retried_without_holding_up_other_orders(
    shop: Shop, auth: dict[str, str]
) -> None:
    flaky_id = await shop.place(auth, [("SKU-0006", 1)], "tok_flaky")
    steady_id = await shop.place(auth, [("SKU-0007", 1)], "tok_ok")
    steady = await shop.settled(auth, steady_id)
    flaky = await shop.settled(auth, flaky_id)

    assert (flaky["status"], steady["status"]) == ("CONFIRMED", "CONFIRMED")
    # The steady order, placed second, was not queued behind the flaky one's retries.
    assert _confirmed_at(steady) < _confirmed_at(flaky)
    charge = await shop.db("payment")["gateway_charges"].find_one({"_id": f"order-{flaky_id}"})
    assert (charge["outcome"], charge["attempts"]) == ("captured", 3)
    assert await shop.stock("SKU-0006") == INITIAL_STOCK - 1
    assert await shop.notifications(flaky_id) == ["order_confirmed"]


async def test_stock_endpoint_follows_reservations_through_the_cache(
    shop: Shop, auth: dict[str, str]
) -> None:
    url = f"{shop.pipeline.url('inventory')}/stock/SKU-0008"
    before = await shop.http.get(url)
    assert before.status_code == 200
    assert before.json()["available"] == INITIAL_STOCK
    cached = await shop.http.get(url)
    assert cached.headers["X-Cache"] == "hit"

    order_id = await shop.place(auth, [("SKU-0008", 3)], "tok_ok")
    assert (await shop.settled(auth, order_id))["status"] == "CONFIRMED"
    after = await shop.http.get(url)
    # Served from the cache, yet current: the reservation wrote the new level through.
    assert after.headers["X-Cache"] == "hit"
    assert after.json()["available"] == INITIAL_STOCK - 3 == await shop.stock("SKU-0008")

    declined = await shop.place(auth, [("SKU-0008", 5)], "tok_decline")
    assert (await shop.settled(auth, declined))["status"] == "CANCELLED"

    async def restored() -> bool:
        response = await shop.http.get(url)
        return bool(response.json()["available"] == INITIAL_STOCK - 3)

    await eventually(restored)
    assert (
        await shop.http.get(f"{shop.pipeline.url('inventory')}/stock/NOPE-1")
    ).status_code == 404


def _confirmed_at(order: dict[str, Any]) -> datetime:
    [entry] = [h for h in order["history"] if h["status"] == "CONFIRMED"]
    return datetime.fromisoformat(entry["at"])
