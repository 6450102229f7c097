"""Clients on the real servers for integration tests of the runtime and the adapters."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from infra.devstack import RabbitVhost
from infra.messaging.broker import Broker
from tests.conftest import fresh_vhost


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[Broker]:
    broker = Broker(amqp_url, f"itest-{uuid.uuid4().hex[:6]}")
    await broker.connect()
    yield broker
    await broker.close()


@pytest.fixture
async def mongo_db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    name = f"itest_{uuid.uuid4().hex[:8]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


@pytest.fixture(scope="module")
def rabbitmq_vhost(rabbitmq_server: RabbitVhost) -> Iterator[RabbitVhost]:
    """A vhost per module: the queues a module's tests declare are deleted with it, instead of
    piling up in the session's vhost (see tests/conftest.py on the broker's file handles)."""
    yield from fresh_vhost(rabbitmq_server.url.rsplit("/", 1)[0], rabbitmq_server.management)


@pytest.fixture(scope="module")
def amqp_url(rabbitmq_vhost: RabbitVhost) -> str:
    return rabbitmq_vhost.url
