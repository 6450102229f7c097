"""The inventory admin API over HTTP: token checks, adding a SKU, restocking, the
StockReplenished events it publishes (seen on a queue of the test's own: nothing else is bound
to that exchange yet) and its OpenAPI description."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import pytest

from tests.e2e.inventory_support import ADMIN, unique_sku
from tests.e2e.pipeline import Pipeline
from tests.integration.events import collected, listening

pytestmark = pytest.mark.e2e


@pytest.fixture
async def replenished(pipeline: Pipeline) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect(pipeline.amqp_url)
    yield await listening(await connection.channel(), "StockReplenished")
    await connection.close()


async def announced(queue: aio_pika.abc.AbstractQueue, sku: str, count: int) -> list[Any]:
    found = await collected(queue, count, sku)
    assert [envelope.producer for envelope, _ in found] == ["inventory"] * count
    return [event.model_dump() for _, event in found]


async def test_admin_endpoints_need_the_admin_token(
    http: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    url = f"{pipeline.url('inventory')}/admin/skus"
    body = {"sku": unique_sku("AUTH"), "name": "x", "price_cents": 1, "stock": 1}
    missing = await http.post(url, json=body)
    assert missing.status_code == 401
    assert missing.json()["code"] == "unauthenticated"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    # Non-ASCII too: compared as bytes, never a 500.
    for wrong in (b"Bearer not-the-token", "Bearer dév-admin".encode("latin-1"), b"Basic eDp5"):
        refused = await http.post(url, json=body, headers={b"Authorization": wrong})
        assert refused.status_code in (401, 403), wrong
        assert refused.json()["code"] in ("unauthenticated", "forbidden")
    forbidden = await http.post(url, json=body, headers={"Authorization": "Bearer nope"})
    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "forbidden")
    restock = await http.post(f"{url}/{body['sku']}/restock", json={"quantity": 1})
    assert restock.status_code == 401
    assert (await http.get(f"{pipeline.url('inventory')}/stock/{body['sku']}")).status_code == 404


async def test_adding_and_restocking_a_sku_is_stored_served_and_announced(
    http: httpx.AsyncClient, pipeline: Pipeline, replenished: aio_pika.abc.AbstractQueue
) -> None:
    base = pipeline.url("inventory")
    sku = unique_sku("ADMIN")
    body = {"sku": sku, "name": "Desk Lamp", "price_cents": 2599, "stock": 5}
    created = await http.post(f"{base}/admin/skus", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json() == {
        "sku": sku,
        "name": "Desk Lamp",
        "price_cents": 2599,
        "available": 5,
        "version": 1,
    }
    again = await http.post(f"{base}/admin/skus", json=body, headers=ADMIN)
    assert (again.status_code, again.json()["code"]) == (409, "sku_exists")

    restocked = await http.post(
        f"{base}/admin/skus/{sku}/restock", json={"quantity": 20}, headers=ADMIN
    )
    assert restocked.status_code == 200, restocked.text
    assert restocked.json() == {"sku": sku, "available": 25, "version": 2}
    level = await http.get(f"{base}/stock/{sku}")
    assert (level.json()["available"], level.headers["X-Cache"]) == (25, "hit")
    assert await announced(replenished, sku, 2) == [
        {"sku": sku, "quantity": 5, "available": 5},
        {"sku": sku, "quantity": 20, "available": 25},
    ]

    unknown = await http.post(
        f"{base}/admin/skus/NOPE-404/restock", json={"quantity": 1}, headers=ADMIN
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_sku")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/skus", {"sku": "bad sku", "name": "x", "price_cents": 1, "stock": 0}),
        ("/admin/skus", {"sku": "OK-1", "name": "", "price_cents": 1, "stock": 0}),
        ("/admin/skus", {"sku": "OK-1", "name": "x", "price_cents": -1, "stock": 0}),
        ("/admin/skus", {"sku": "OK-1", "name": "x", "price_cents": 1, "stock": -1}),
        ("/admin/skus", {"sku": "OK-1", "name": "x", "price_cents": 1}),
        ("/admin/skus/SKU-0001/restock", {"quantity": 0}),
        ("/admin/skus/SKU-0001/restock", {"quantity": 100_001}),
        ("/admin/skus/SKU-0001/restock", {"quantity": 1, "extra": True}),
        ("/admin/skus/bad%20sku/restock", {"quantity": 1}),
    ],
)
async def test_malformed_admin_requests_get_422(
    http: httpx.AsyncClient, pipeline: Pipeline, path: str, body: dict[str, Any]
) -> None:
    response = await http.post(f"{pipeline.url('inventory')}{path}", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"


async def test_the_openapi_description_covers_the_admin_api(
    http: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    spec = (await http.get(f"{pipeline.url('inventory')}/openapi.json")).json()
    add = spec["paths"]["/admin/skus"]["post"]
    restock = spec["paths"]["/admin/skus/{sku}/restock"]["post"]
    assert {"201", "401", "403", "409", "422"} <= set(add["responses"])
    assert {"200", "401", "403", "404", "422"} <= set(restock["responses"])
    assert add["security"] == restock["security"] == [{"HTTPBearer": []}]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    problem = {"$ref": "#/components/schemas/Problem"}
    assert add["responses"]["409"]["content"]["application/problem+json"]["schema"] == problem
    created = add["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/StockLevel"}
    level = spec["paths"]["/stock/{sku}"]["get"]["responses"]["200"]
    assert "X-Cache" in level["headers"]
