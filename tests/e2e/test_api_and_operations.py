"""The HTTP contract: clear 4xx errors, ownership, and the operational endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.devstack.services import SERVICES
from tests.e2e.conftest import register_and_login
from tests.e2e.pipeline import Pipeline

pytestmark = pytest.mark.e2e


async def test_every_service_reports_health_readiness_and_metrics(
    http: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    for service in SERVICES:
        base = pipeline.url(service)
        assert (await http.get(f"{base}/health")).json()["status"] == "ok"
        ready = await http.get(f"{base}/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        # Payment never uses Redis, so it does not check it; notification reads customers'
        # sessions there (GET /notifications), its consumers do not.
        uses_redis = service in ("order", "inventory", "notification")
        expected = {"broker": True, "mongodb": True} | ({"redis": True} if uses_redis else {})
        assert ready.json()["checks"] == expected
        metrics = await http.get(f"{base}/metrics")
        names = {family.name for family in text_string_to_metric_families(metrics.text)}
        assert {"messages_consumed", "http_requests", "outbox_backlog_events"} <= names


async def test_orders_need_a_valid_session(http: httpx.AsyncClient, pipeline: Pipeline) -> None:
    url = f"{pipeline.url('order')}/orders"
    body = {"items": [{"sku": "SKU-0001", "quantity": 1}], "payment_method": "tok_ok"}
    missing = await http.post(url, json=body)
    assert missing.status_code == 401
    assert missing.json()["code"] == "unauthenticated"
    forged = await http.post(url, json=body, headers={"Authorization": "Bearer forged"})
    assert forged.status_code == 401
    assert forged.json()["code"] == "session_expired"


@pytest.mark.parametrize(
    "body",
    [
        {"items": [], "payment_method": "tok_ok"},
        {"items": [{"sku": "SKU-0001", "quantity": 0}], "payment_method": "tok_ok"},
        {"items": [{"sku": "bad sku!", "quantity": 1}], "payment_method": "tok_ok"},
        {"items": [{"sku": "SKU-0001", "quantity": 1}]},
        {"items": [{"sku": "SKU-0001", "quantity": 1}], "payment_method": "tok_ok", "x": 1},
        {"items": [{"sku": "SKU-0001", "quantity": 600}] * 2, "payment_method": "tok_ok"},
    ],
)
async def test_malformed_orders_get_422_with_a_reason(
    http: httpx.AsyncClient, pipeline: Pipeline, auth: dict[str, str], body: object
) -> None:
    response = await http.post(f"{pipeline.url('order')}/orders", json=body, headers=auth)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] in ("invalid_request", "invalid_order")
    assert problem["type"] == f"urn:order-pipeline:problem:{problem['code']}"
    assert (problem["status"], problem["title"]) == (422, "Unprocessable Entity")
    assert problem["detail"]


async def test_customers_see_only_their_own_orders(
    http: httpx.AsyncClient, pipeline: Pipeline, auth: dict[str, str]
) -> None:
    placed = await http.post(
        f"{pipeline.url('order')}/orders",
        headers=auth,
        json={"items": [{"sku": "SKU-0010", "quantity": 1}], "payment_method": "tok_ok"},
    )
    order_url = f"{pipeline.url('order')}/orders/{placed.json()['order_id']}"
    assert (await http.get(order_url, headers=auth)).status_code == 200
    stranger = await register_and_login(http, pipeline)
    hidden = await http.get(order_url, headers=stranger)
    assert hidden.status_code == 404
    assert hidden.json()["code"] == "order_not_found"


async def test_registration_and_login_errors(http: httpx.AsyncClient, pipeline: Pipeline) -> None:
    base = pipeline.url("order")
    account = {"email": "dup@example.com", "name": "D", "password": "long enough password"}
    assert (await http.post(f"{base}/customers", json=account)).status_code in (201, 409)
    again = await http.post(f"{base}/customers", json=account)
    assert again.status_code == 409
    assert again.json()["code"] == "email_taken"
    short = await http.post(f"{base}/customers", json={**account, "password": "short"})
    assert short.status_code == 422
    wrong = await http.post(
        f"{base}/sessions", json={"email": account["email"], "password": "not the password"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "bad_credentials"


async def test_oversized_bodies_and_unknown_routes_get_the_error_shape(
    http: httpx.AsyncClient, pipeline: Pipeline, auth: dict[str, str]
) -> None:
    huge = {"items": [{"sku": "SKU-0001", "quantity": 1}], "payment_method": "x" * 70_000}
    too_large = await http.post(f"{pipeline.url('order')}/orders", json=huge, headers=auth)
    assert too_large.status_code == 413
    assert too_large.json()["code"] == "payload_too_large"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(70):
            yield b" " * 1024

    streamed = await http.post(
        f"{pipeline.url('order')}/customers",
        content=chunked(),
        headers={"Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    missing = await http.get(f"{pipeline.url('inventory')}/nowhere")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
