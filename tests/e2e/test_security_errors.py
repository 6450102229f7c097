"""Inputs that once got a plain-text 500, and the one error shape (RFC 9457 problem details)
on every service, over real HTTP against the four service processes (issue 11 item 9, issue 15
item 5)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import httpx
import pytest

from contracts.events import WEBHOOK_URL_MAX_LENGTH
from tests.e2e.pipeline import Pipeline
from tests.e2e.test_order_api import Mongo
from tests.e2e.test_order_flow import Shop

pytestmark = [pytest.mark.e2e, pytest.mark.security]
PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == f"urn:order-pipeline:problem:{code}"
    assert problem["title"]
    assert problem["detail"]
    return problem


@pytest.fixture
def shop(http: httpx.AsyncClient, pipeline: Pipeline, mongo: Mongo) -> Shop:
    return Shop(http, pipeline, mongo)


def _cursor(created_at: str, order_id: object) -> str:
    raw = json.dumps([created_at, order_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("9999-12-31T23:59:59-14:00", "x"),  # year 10000 in UTC: outside BSON dates
        _cursor("0001-01-01T00:00:00+14:00", "x"),  # year 0 in UTC
        _cursor("2026-01-01T00:00:00", "x"),  # no timezone
        _cursor("2026-01-01T00:00:00+00:00", {"$gt": ""}),  # not a string id
        "not-a-cursor",
    ],
)
async def test_a_forged_cursor_is_a_400_with_a_reason(
    http: httpx.AsyncClient, pipeline: Pipeline, auth: dict[str, str], cursor: str
) -> None:
    response = await http.get(
        f"{pipeline.url('order')}/orders", params={"cursor": cursor}, headers=auth
    )
    assert_problem(response, 400, "invalid_cursor")


async def put_webhook_url(
    http: httpx.AsyncClient, pipeline: Pipeline, auth: dict[str, str], length: int
) -> httpx.Response:
    """The customer's preference set to a webhook URL `length` characters long."""
    base = "https://hooks.example.com/"
    return await http.put(
        f"{pipeline.url('order')}/customers/me/notification-preference",
        json={"channel": "webhook", "webhook_url": base + "a" * (length - len(base))},
        headers=auth,
    )


@pytest.mark.parametrize("length", [WEBHOOK_URL_MAX_LENGTH + 1, 2083])
async def test_a_webhook_url_the_event_would_refuse_is_refused_by_the_api(
    http: httpx.AsyncClient, pipeline: Pipeline, auth: dict[str, str], length: int
) -> None:
    response = await put_webhook_url(http, pipeline, auth, length)
    problem = assert_problem(response, 422, "invalid_request")
    assert str(WEBHOOK_URL_MAX_LENGTH) in problem["detail"]


async def test_the_longest_webhook_url_passes_api_and_event(
    http: httpx.AsyncClient, pipeline: Pipeline, auth: dict[str, str]
) -> None:
    response = await put_webhook_url(http, pipeline, auth, WEBHOOK_URL_MAX_LENGTH)
    assert response.status_code < 300, response.text


async def test_a_cancel_that_keeps_losing_the_race_is_a_409_never_a_500(
    shop: Shop, auth: dict[str, str]
) -> None:
    """A writer bumps the order's version as fast as MongoDB allows (as consumed events would
    under load) while the customer cancels: every optimistic retry of the cancel may lose."""
    statuses: list[int] = []
    for _ in range(8):  # bounded: each round is one order
        order_id = await shop.place(auth, [("SKU-0031", 1)], "tok_flaky")
        stop = asyncio.Event()
        bumper = asyncio.create_task(_bump_version(shop.db("order")["orders"], order_id, stop))
        try:
            response = await shop.http.post(
                f"{shop.pipeline.url('order')}/orders/{order_id}/cancel", headers=auth
            )
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await bumper
        statuses.append(response.status_code)
        if response.status_code == 409 and response.json()["code"] == "order_changed":
            assert_problem(response, 409, "order_changed")
            assert response.headers["retry-after"] == "1"
            break
    assert 500 not in statuses, statuses
    assert statuses[-1] == 409, f"the race was never lost in 8 rounds: {statuses}"


async def _bump_version(orders: Any, order_id: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await orders.update_one({"_id": order_id}, {"$inc": {"version": 1}})


@pytest.mark.parametrize("service", ["order", "inventory", "payment", "notification"])
async def test_every_service_answers_errors_as_problem_details(
    http: httpx.AsyncClient, pipeline: Pipeline, service: str
) -> None:
    base = pipeline.url(service)
    assert_problem(await http.get(f"{base}/no-such-route"), 404, "not_found")
    assert_problem(await http.delete(f"{base}/health"), 405, "method_not_allowed")
    too_big = await http.post(f"{base}/anything", content=b"x" * (64 * 1024 + 1))
    assert_problem(too_big, 413, "payload_too_large")
    spec = (await http.get(f"{base}/openapi.json")).json()
    assert "Problem" in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, documented in operation["responses"].items():
                if status[0] in "45":
                    assert set(documented["content"]) == {PROBLEM}, (path, method, status)


async def test_validation_errors_are_problem_details_with_the_errors_listed(
    http: httpx.AsyncClient, pipeline: Pipeline, auth: dict[str, str]
) -> None:
    response = await http.get(f"{pipeline.url('order')}/orders", params={"limit": 0}, headers=auth)
    problem = assert_problem(response, 422, "invalid_request")
    assert problem["errors"][0]["loc"] == ["query", "limit"]
