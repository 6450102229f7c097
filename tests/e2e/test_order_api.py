"""Idempotent submission, listing, cancellation, sessions, the event story and the rebuild."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from tests.e2e.conftest import register_and_login
from tests.e2e.pipeline import Pipeline
from tests.e2e.test_order_flow import Shop
from tests.integration.waiting import eventually

pytestmark = pytest.mark.e2e
Mongo = AsyncMongoClient[dict[str, Any]]
BODY = {"items": [{"sku": "SKU-0020", "quantity": 1}], "payment_method": "tok_ok"}


@pytest.fixture
def shop(http: httpx.AsyncClient, pipeline: Pipeline, mongo: Mongo) -> Shop:
    return Shop(http, pipeline, mongo)


async def test_an_idempotency_key_returns_the_first_order(shop: Shop, auth: dict[str, str]) -> None:
    url = f"{shop.pipeline.url('order')}/orders"
    headers = {**auth, "Idempotency-Key": f"checkout-{uuid.uuid4()}"}
    first = await shop.http.post(url, json=BODY, headers=headers)
    again = await shop.http.post(url, json=BODY, headers=headers)
    other = await shop.http.post(
        url, json={**BODY, "payment_method": "tok_decline"}, headers=headers
    )
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    stored = await shop.db("order")["orders"].count_documents({"_id": first.json()["order_id"]})
    assert stored == 1
    order = await shop.settled(auth, first.json()["order_id"])
    assert order["status"] == "CONFIRMED"  # charged and confirmed once, not twice


async def test_listing_filters_by_status_and_pages_with_a_cursor(
    shop: Shop, http: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    auth = await register_and_login(http, pipeline)
    ids = [await shop.place(auth, [("SKU-0021", 1)], "tok_ok") for _ in range(3)]
    declined = await shop.place(auth, [("SKU-0021", 1)], "tok_decline")
    for order_id in [*ids, declined]:
        await shop.settled(auth, order_id)
    url = f"{pipeline.url('order')}/orders"
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await http.get(url, params=params, headers=auth)).json()
        seen += [o["order_id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [declined, *reversed(ids)]  # newest first, each once
    cancelled = (await http.get(url, params={"status": "CANCELLED"}, headers=auth)).json()
    assert [o["order_id"] for o in cancelled["items"]] == [declined]
    bad = await http.get(url, params={"cursor": "not-a-cursor"}, headers=auth)
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_cursor")


async def test_an_unpaid_order_is_cancelled_and_its_stock_comes_back(
    shop: Shop, auth: dict[str, str]
) -> None:
    before = await shop.stock("SKU-0022")
    order_id = await shop.place(auth, [("SKU-0022", 2)], "tok_flaky")  # slow to pay: retried
    response = await shop.http.post(
        f"{shop.pipeline.url('order')}/orders/{order_id}/cancel", headers=auth
    )
    if response.status_code == 409:  # it was paid before we asked: the other rule holds
        assert response.json()["code"] == "cannot_cancel"
        return
    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"

    async def stock_back() -> bool:
        return await shop.stock("SKU-0022") == before

    await eventually(stock_back, timeout_s=30)
    assert (await shop.settled(auth, order_id))["status"] == "CANCELLED"

    async def voided() -> bool:
        payment = await shop.db("payment")["payments"].find_one({"_id": order_id})
        return payment is not None and payment["status"] == "VOIDED"

    await eventually(voided, timeout_s=30)  # payment heard of the cancel: it will not charge
    charge = await shop.db("payment")["gateway_charges"].find_one({"_id": f"order-{order_id}"})
    assert charge is None or charge.get("captures", 0) == 0
    assert await shop.notifications(order_id) == ["order_cancelled"]


async def test_a_paid_order_cannot_be_cancelled(shop: Shop, auth: dict[str, str]) -> None:
    order_id = await shop.place(auth, [("SKU-0023", 1)], "tok_ok")
    assert (await shop.settled(auth, order_id))["status"] == "CONFIRMED"
    response = await shop.http.post(
        f"{shop.pipeline.url('order')}/orders/{order_id}/cancel", headers=auth
    )
    assert response.status_code == 409
    assert "CONFIRMED" in response.json()["detail"]


async def test_the_story_of_an_order_in_time_order(shop: Shop, auth: dict[str, str]) -> None:
    order_id = await shop.place(auth, [("SKU-0024", 1)], "tok_ok")
    await shop.settled(auth, order_id)
    response = await shop.http.get(
        f"{shop.pipeline.url('order')}/orders/{order_id}/events", headers=auth
    )
    story = [(e["direction"], e["event_type"]) for e in response.json()]
    assert story == [
        ("published", "OrderPlaced"),
        ("consumed", "StockReserved"),
        ("consumed", "PaymentSucceeded"),
        ("published", "OrderConfirmed"),
    ]
    events = response.json()
    assert events[1]["causation_id"] == events[0]["event_id"]  # inventory answered OrderPlaced


async def test_logout_ends_the_session(http: httpx.AsyncClient, pipeline: Pipeline) -> None:
    auth = await register_and_login(http, pipeline)
    orders = f"{pipeline.url('order')}/orders"
    assert (await http.get(orders, headers=auth)).status_code == 200
    logout = await http.delete(f"{pipeline.url('order')}/sessions/current", headers=auth)
    assert logout.status_code == 204
    assert (await http.get(orders, headers=auth)).status_code == 401


async def test_an_order_after_logging_out_everywhere_is_refused(
    http: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    # The service remembers the token from the first order and checks it inside the second
    # one's admission: a session ended since is refused there, before anything is counted.
    auth = await register_and_login(http, pipeline)
    orders = f"{pipeline.url('order')}/orders"
    assert (await http.post(orders, json=BODY, headers=auth)).status_code == 202
    assert (await http.post(orders, json=BODY, headers=auth)).status_code == 202
    assert (await http.delete(f"{pipeline.url('order')}/sessions", headers=auth)).status_code == 204
    refused = await http.post(orders, json=BODY, headers=auth)
    assert refused.status_code == 401
    assert refused.json()["code"] == "session_expired"
    assert refused.headers["WWW-Authenticate"] == "Bearer"


async def test_repeated_failed_logins_are_refused_for_a_while(
    http: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    base = pipeline.url("order")
    account = {"email": f"{uuid.uuid4().hex[:8]}@example.com", "password": "the right one"}
    await http.post(f"{base}/customers", json={**account, "name": "R"})
    wrong = {**account, "password": "a wrong one"}
    codes = [(await http.post(f"{base}/sessions", json=wrong)).status_code for _ in range(5)]
    assert codes == [401] * 5
    locked = await http.post(f"{base}/sessions", json=account)  # even the right password
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert locked.json()["code"] == "too_many_failed_logins"


async def test_the_read_model_rebuilds_from_events_alone(
    shop: Shop, auth: dict[str, str], pipeline: Pipeline
) -> None:
    """Runs after a mixed batch (the other tests); a broken document is restored."""
    mixed = [await shop.place(auth, [("SKU-0025", 1)], m) for m in ("tok_ok", "tok_decline")]
    mixed.append(await shop.place(auth, [("SKU-0025", 1000)], "tok_ok"))  # beyond the stock
    await asyncio.gather(*(shop.settled(auth, i) for i in mixed))
    orders = shop.db("order")["orders"]
    assert {d["status"] async for d in orders.find()} >= {"CONFIRMED", "CANCELLED", "REJECTED"}
    assert rebuild(pipeline, "--check").returncode == 0

    live = await orders.find_one({"_id": mixed[0]})
    await orders.update_one(
        {"_id": mixed[0]}, {"$set": {"status": "PENDING", "history": [], "total_cents": None}}
    )
    checked = rebuild(pipeline, "--check", "--progress")
    assert checked.returncode == 1
    assert "differ=1" in checked.stdout
    # The bar, on stderr, full at the end (however many orders the other tests placed).
    assert re.search(r"\[#{30}\] (\d+)/\1 orders, 1 differ", checked.stderr), checked.stderr
    assert "differ=1" not in checked.stderr
    assert rebuild(pipeline).returncode == 0
    restored = await orders.find_one({"_id": mixed[0]})
    for field in ("status", "history", "total_cents", "lines", "priced_lines", "created_at"):
        assert restored[field] == live[field], field


def rebuild(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "order_service.rebuild", *args],
        env=pipeline.env("order"),
        capture_output=True,
        text=True,
        timeout=120,
    )
