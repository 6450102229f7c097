"""Hundreds of orders at once for a few SKUs whose stock covers only some of them: nothing is
oversold, the stock taken is exactly what confirmed orders hold, and every other order ends
REJECTED or CANCELLED holding nothing. Runs on a fresh pipeline of its own."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
import pytest

from tests.e2e.conftest import register_and_login
from tests.e2e.inventory_support import FAST_RETRIES, TERMINAL, Mongo, Shop, unique_sku
from tests.e2e.pipeline import Pipeline, pipeline_fixture
from tests.integration.waiting import eventually

pytestmark = pytest.mark.e2e
ORDERS = 220
CUSTOMERS = 4
# 80 units against a demand of roughly 2 per order: most orders cannot be served.
STOCK = (40, 25, 15)


crowded_pipeline = pipeline_fixture("crowded_pipeline", FAST_RETRIES)


def plan(index: int, skus: list[str]) -> tuple[list[tuple[str, int]], str]:
    """A deterministic mix: mostly tok_ok, then declines, flaky payments, two-line orders
    and orders beyond any stock."""
    rng = random.Random(index)
    sku = rng.choice(skus)
    kind = index % 10
    if kind == 6:
        return [(sku, rng.randint(1, 3))], "tok_decline"
    if kind == 7:
        return [(sku, rng.randint(1, 3))], "tok_flaky"
    if kind == 8:
        return [(sku, 1), (rng.choice([s for s in skus if s != sku]), 2)], "tok_ok"
    if kind == 9:
        return [(sku, max(STOCK) + 1)], "tok_ok"
    return [(sku, rng.randint(1, 3))], "tok_ok"


async def test_concurrent_orders_never_oversell_and_leave_no_stock_behind(
    mongo: Mongo, crowded_pipeline: Pipeline
) -> None:
    limits = httpx.Limits(max_connections=ORDERS + 10, max_keepalive_connections=ORDERS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        shops = [
            Shop(http, mongo, crowded_pipeline, await register_and_login(http, crowded_pipeline))
            for _ in range(CUSTOMERS)
        ]
        initial = {unique_sku("RUSH"): level for level in STOCK}
        await shops[0].add_skus(initial)
        skus = list(initial)
        plans = [plan(i, skus) for i in range(ORDERS)]
        started = asyncio.get_running_loop().time()
        order_ids = await asyncio.gather(
            *(shops[i % CUSTOMERS].place(*plans[i]) for i in range(ORDERS))
        )
    assert len(set(order_ids)) == ORDERS
    db = shops[0].db

    async def all_settled() -> bool:
        terminal = await db("order")["orders"].count_documents({"status": {"$in": list(TERMINAL)}})
        confirmed = await db("order")["orders"].count_documents({"status": "CONFIRMED"})
        held = await db("inventory")["reservations"].count_documents({"status": "RESERVED"})
        return bool(terminal == ORDERS and held == confirmed)  # cancelled ones released

    await eventually(all_settled, timeout_s=50, interval_s=0.25)
    elapsed = asyncio.get_running_loop().time() - started
    orders = {d["_id"]: d async for d in db("order")["orders"].find()}
    reservations = {d["_id"]: d async for d in db("inventory")["reservations"].find()}
    final = {d["_id"]: d["available"] async for d in db("inventory")["stock"].find()}
    ledger = [d async for d in db("payment")["gateway_charges"].find()]

    statuses = Counter(d["status"] for d in orders.values())
    taken: Counter[str] = Counter()
    for order in orders.values():
        if order["status"] == "CONFIRMED":
            taken.update({line["sku"]: line["quantity"] for line in order["lines"]})
    for order_id, order in orders.items():
        holding = reservations[order_id]["status"]
        expected = {"CONFIRMED": {"RESERVED"}, "REJECTED": {"FAILED"}, "CANCELLED": {"RELEASED"}}
        assert holding in expected[order["status"]], (order_id, order["status"], holding)
    captured = [d for d in ledger if d.get("captures", 0) > 0]
    double_charged = sum(d["captures"] - 1 for d in captured)
    charged_unconfirmed = sum(
        1 for d in captured if orders[d["_id"].removeprefix("order-")]["status"] != "CONFIRMED"
    )
    mismatch = {
        s: (final[s], initial[s] - taken[s]) for s in skus if final[s] != initial[s] - taken[s]
    }
    print(
        f"\ntally: orders={ORDERS} confirmed={statuses['CONFIRMED']} "
        f"rejected={statuses['REJECTED']} cancelled={statuses['CANCELLED']} "
        f"taken={dict(taken)} final={final} double_charged={double_charged} "
        f"charged_unconfirmed={charged_unconfirmed} stock_mismatch={mismatch} "
        f"settled_in={elapsed:.1f}s"
    )
    assert sum(statuses.values()) == ORDERS
    assert mismatch == {}
    assert all(level >= 0 for level in final.values())
    assert (double_charged, charged_unconfirmed) == (0, 0)
    assert statuses["CONFIRMED"] > 0
    assert statuses["REJECTED"] > ORDERS // 3  # the stock really ran out
    assert statuses["CANCELLED"] > 0
