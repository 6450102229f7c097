"""One running pipeline per test session: four service processes on the real servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from infra.devstack import RabbitVhost
from tests.e2e.pipeline import Pipeline, running_pipeline

CATALOG_SIZE = 60
INITIAL_STOCK = 100


@pytest.fixture(scope="session")
def pipeline(
    rabbitmq_vhost: RabbitVhost,
    mongo_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    # Short retry tiers keep the tok_flaky path (two transient failures) to seconds.
    fast = {"AMQP_RETRY_DELAYS_MS": "[1000,2000,4000]", "OUTBOX_POLL_INTERVAL_S": "0.5"}
    log_dir = tmp_path_factory.mktemp("service-logs")
    with running_pipeline(
        rabbitmq_vhost, mongo_url, redis_url, log_dir, fast, seed=(CATALOG_SIZE, INITIAL_STOCK)
    ) as running:
        yield running


@pytest.fixture(scope="session")
async def mongo(mongo_url: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client
    await client.close()


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def register_and_login(http: httpx.AsyncClient, pipeline: Pipeline) -> dict[str, str]:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    credentials = {"email": email, "password": "correct horse battery"}
    created = await http.post(
        f"{pipeline.url('order')}/customers", json={**credentials, "name": "T"}
    )
    assert created.status_code == 201, created.text
    session = await http.post(f"{pipeline.url('order')}/sessions", json=credentials)
    assert session.status_code == 201, session.text
    return {"Authorization": f"Bearer {session.json()['token']}"}


@pytest.fixture(scope="session")
async def auth(http: httpx.AsyncClient, pipeline: Pipeline) -> dict[str, str]:
    return await register_and_login(http, pipeline)
