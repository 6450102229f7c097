"""`python -m inventory_service.seed` as `infra/bin/up` runs it, against the test MongoDB: the
pipelines of the other layers write the same upserts in-process (tests/e2e/pipeline.py)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from infra.devstack import free_port
from infra.devstack.services import service_env

pytestmark = pytest.mark.integration


def run_seed(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "inventory_service.seed", *args],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_seed_creates_the_catalog_keeps_stock_and_resets_it_on_request(
    amqp_url: str, mongo_url: str, redis_url: str, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    database = f"seed_{uuid.uuid4().hex[:8]}"
    env = service_env(
        amqp_url=amqp_url,
        mongo_url=mongo_url,
        database=database,
        redis_url=redis_url,
        http_port=free_port(),
    )
    stock = mongo[database]["stock"]
    try:
        assert "5 inserted or reset" in run_seed(env, "--count", "5", "--stock", "7")
        assert await stock.count_documents({"available": 7, "reserved": 0}) == 5
        sold = await stock.find_one_and_update(
            {"_id": "SKU-0002"}, {"$set": {"available": 3, "reserved": 4}}
        )
        assert sold is not None

        assert "0 inserted or reset" in run_seed(env, "--count", "5", "--stock", "7")
        assert await stock.find_one({"_id": "SKU-0002"}, {"_id": 0, "available": 1}) == {
            "available": 3
        }

        assert "5 inserted or reset" in run_seed(env, "--count", "5", "--stock", "7", "--reset")
        assert await stock.count_documents({"available": 7, "reserved": 0}) == 5
    finally:
        await mongo.drop_database(database)
