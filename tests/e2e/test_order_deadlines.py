"""Saga deadlines and refunds, the four services as processes with a deadline of seconds:
an order whose StockReserved is lost ends CANCELLED by its deadline (with one or two order
processes sweeping), and a charge the gateway answers after the deadline is refunded once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from contracts.topology import queue_name
from tests.e2e.conftest import register_and_login
from tests.e2e.pipeline import Pipeline, pipeline_fixture
from tests.integration.waiting import eventually

pytestmark = pytest.mark.e2e
Mongo = AsyncMongoClient[dict[str, Any]]
DEADLINE_S = 8
STOCK = 100
DEADLINE_ENV = {
    "ORDER_DEADLINE_S": str(DEADLINE_S),
    "ORDER_DEADLINE_SWEEP_S": "0.5",
    # tok_late is approved this long after the charge starts: after the order's deadline.
    "PAYMENT_SIMULATED_LATE_S": str(DEADLINE_S + 3),
    "PAYMENT_GATEWAY_TIMEOUT_S": "30",
    "AMQP_RETRY_DELAYS_MS": "[1000,2000,4000]",
    "OUTBOX_POLL_INTERVAL_S": "0.5",
}


# A pipeline per test: a deadline test counts the expiries and refunds of its own processes.
one_order_process = pipeline_fixture(
    "one_order_process", DEADLINE_ENV, scope="function", seed=(4, STOCK)
)
two_order_processes = pipeline_fixture(
    "two_order_processes",
    DEADLINE_ENV,
    scope="function",
    seed=(4, STOCK),
    extra_replicas={"order": 1},
)


class Stack:
    def __init__(self, pipeline: Pipeline, http: httpx.AsyncClient, mongo: Mongo) -> None:
        self.pipeline, self.http, self.mongo = pipeline, http, mongo

    def db(self, service: str) -> Any:
        return self.mongo[self.pipeline.database(service)]

    async def place(self, auth: dict[str, str], sku: str, method: str) -> str:
        response = await self.http.post(
            f"{self.pipeline.url('order')}/orders", headers=auth,
            json={"items": [{"sku": sku, "quantity": 2}], "payment_method": method},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        return str(response.json()["order_id"])

    async def order(self, auth: dict[str, str], order_id: str, *statuses: str) -> dict[str, Any]:
        async def in_status() -> dict[str, Any] | None:
            response = await self.http.get(
                f"{self.pipeline.url('order')}/orders/{order_id}", headers=auth
            )
            body: dict[str, Any] = response.json()
            return body if body["status"] in statuses else None

        found: dict[str, Any] = await eventually(in_status, timeout_s=45, interval_s=0.2)
        return found

    async def notifications(self, order_id: str, expected: int) -> list[str]:
        async def recorded() -> list[str] | None:
            cursor = self.db("notification")["notifications"].find({"order_id": order_id})
            kinds = [d["kind"] async for d in cursor]
            return kinds if len(kinds) >= expected else None

        kinds: list[str] = await eventually(recorded, timeout_s=30)
        return sorted(kinds)

    async def stock_is_back(self, sku: str) -> None:
        async def back() -> bool:
            document = await self.db("inventory")["stock"].find_one({"_id": sku})
            return document is not None and document["available"] == STOCK

        await eventually(back, timeout_s=30)

    async def metric(self, instance: str, name: str, **labels: str) -> float:
        text = (await self.http.get(f"{self.pipeline.url(instance)}/metrics")).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )


async def remove_stock_reserved(pipeline: Pipeline, order_id: str) -> None:
    """Take this order's StockReserved off payment's queue (an operator purging it, a
    message lost): nothing will ever answer the order. Others go back to the queue."""
    connection = await aio_pika.connect(pipeline.amqp_url, timeout=30)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name("payment", "StockReserved"))

        async def removed() -> bool:
            message = await queue.get(fail=False, timeout=10)
            if message is None:
                return False
            if json.loads(message.body)["payload"]["order_id"] == order_id:
                await message.ack()
                return True
            await message.nack(requeue=True)
            return False

        await eventually(removed, timeout_s=10, interval_s=0.05)


async def lose_the_reservation_answer(stack: Stack, sku: str) -> tuple[str, dict[str, Any]]:
    """Payment stopped; an order placed and reserved; its StockReserved removed from
    payment's queue; payment started again. Returns the order once it ended."""
    pipeline = stack.pipeline
    auth = await register_and_login(stack.http, pipeline)
    pipeline.stop("payment")
    try:
        order_id = await stack.place(auth, sku, "tok_ok")
        reserved = await stack.order(auth, order_id, "RESERVED", "CANCELLED")
        assert reserved["status"] == "RESERVED", "the deadline passed before the reservation"
        await remove_stock_reserved(pipeline, order_id)
    finally:
        pipeline.start("payment")
        pipeline.wait_ready("payment", 60)
    ended = await stack.order(auth, order_id, "CONFIRMED", "REJECTED", "CANCELLED")
    return order_id, ended


def assert_ended_by_deadline(order: dict[str, Any]) -> None:
    assert order["status"] == "CANCELLED"
    assert [h["status"] for h in order["history"]] == ["PENDING", "RESERVED", "CANCELLED"]
    assert order["history"][-1]["reason"] == "deadline"
    created_at = datetime.fromisoformat(order["created_at"])
    deadline_at = datetime.fromisoformat(order["deadline_at"])
    assert abs(deadline_at - created_at - timedelta(seconds=DEADLINE_S)) < timedelta(seconds=1)
    assert datetime.fromisoformat(order["history"][-1]["at"]) >= deadline_at


async def a_lost_reservation_answer_ends_by_the_deadline(stack: Stack, sku: str) -> str:
    """The order ends CANCELLED by its deadline, its stock back, its customer told once."""
    order_id, order = await lose_the_reservation_answer(stack, sku)
    assert_ended_by_deadline(order)
    await stack.stock_is_back(sku)
    assert await stack.notifications(order_id, 1) == ["order_cancelled"]
    return order_id


async def test_an_order_whose_reservation_answer_is_lost_ends_by_its_deadline(
    one_order_process: Pipeline, http: httpx.AsyncClient, mongo: Mongo
) -> None:
    stack = Stack(one_order_process, http, mongo)
    order_id = await a_lost_reservation_answer_ends_by_the_deadline(stack, "SKU-0001")
    # Payment met the cancellation first: voided, never charged.
    payment = await eventually(lambda: stack.db("payment")["payments"].find_one({"_id": order_id}))
    assert payment["status"] == "VOIDED"
    assert (
        await stack.db("payment")["gateway_charges"].find_one({"_id": f"order-{order_id}"}) is None
    )
    assert await stack.metric("order", "orders_deadline_expired_total",
                              status_at_expiry="RESERVED") == 1  # fmt: skip


async def test_two_order_processes_end_an_overdue_order_once(
    two_order_processes: Pipeline, http: httpx.AsyncClient, mongo: Mongo
) -> None:
    stack = Stack(two_order_processes, http, mongo)
    order_id = await a_lost_reservation_answer_ends_by_the_deadline(stack, "SKU-0002")
    document = await stack.db("order")["orders"].find_one({"_id": order_id})
    published = [e["event_type"] for e in document["outbox"]]
    assert published.count("OrderCancelled") == 1
    expired = [
        await stack.metric(instance, "orders_deadline_expired_total")
        for instance in ("order", "order-2")
    ]
    assert sum(expired) == 1, expired
    consumed = await stack.metric("inventory", "messages_consumed_total",
                                  queue=queue_name("inventory", "OrderCancelled"))  # fmt: skip
    assert consumed == 1


async def test_a_payment_answered_after_the_deadline_is_refunded_once(
    one_order_process: Pipeline, http: httpx.AsyncClient, mongo: Mongo
) -> None:
    stack = Stack(one_order_process, http, mongo)
    auth = await register_and_login(http, one_order_process)
    order_id = await stack.place(auth, "SKU-0003", "tok_late")
    order = await stack.order(auth, order_id, "CONFIRMED", "REJECTED", "CANCELLED")
    assert_ended_by_deadline(order)
    await stack.stock_is_back("SKU-0003")
    assert await stack.notifications(order_id, 2) == ["order_cancelled", "payment_refunded"]
    payments = stack.db("payment")["payments"]

    async def refunded() -> dict[str, Any] | None:
        document: dict[str, Any] | None = await payments.find_one({"_id": order_id})
        return document if document and document["status"] == "REFUNDED" else None

    payment = await eventually(refunded, timeout_s=30)
    announced = [e for e in payment["outbox"] if e["event_type"] == "PaymentRefunded"]
    assert len(announced) == 1
    assert announced[0]["payload"]["reason"] == "deadline"
    ledger = await stack.db("payment")["gateway_charges"].find_one({"_id": f"order-{order_id}"})
    assert (ledger["captures"], ledger["refunds"]) == (1, 1)
    assert ledger["reference"] == announced[0]["payload"]["gateway_reference"]
    assert await stack.metric("payment", "payments_refunded_total", reason="deadline") == 1
