"""One running pipeline per test session: four service processes on the real servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pymongo import AsyncMongoClient

from infra import devstack
from infra.devstack import RabbitVhost
from tests.e2e.pipeline import SERVICES, Pipeline

CATALOG_SIZE = 60
INITIAL_STOCK = 100


@pytest.fixture(scope="session")
def pipeline(
    rabbitmq_vhost: RabbitVhost,
    mongo_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    log_dir: Path = tmp_path_factory.mktemp("service-logs")
    # A vhost of its own: the services' queues must not share exchanges with the
    # integration tests' publishers.
    vhost = f"e2e-{uuid.uuid4().hex[:6]}"
    devstack.create_vhost(vhost, rabbitmq_vhost.management)
    base = rabbitmq_vhost.url.rsplit("/", 1)[0]
    running = Pipeline(
        f"{base}/{quote(vhost, safe='')}",
        mongo_url,
        redis_url,
        log_dir,
        # Short retry tiers keep the tok_flaky path (two transient failures) to seconds.
        extra_env={"AMQP_RETRY_DELAYS_MS": "[1000,2000,4000]", "OUTBOX_POLL_INTERVAL_S": "0.5"},
    )
    running.seed(CATALOG_SIZE, INITIAL_STOCK)
    try:
        running.start_all()
        yield running
    finally:
        codes = running.stop_all()
        devstack.delete_vhost(vhost, rabbitmq_vhost.management)
        for service in SERVICES:
            print(f"--- {service} log tail ---\n{running.tail(service, 15)}")
    assert codes == dict.fromkeys(SERVICES, 0), f"unclean shutdown: {codes}"


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
