"""One running pipeline for the e2e package: four service processes on the real servers."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.pipeline import Pipeline, pipeline_fixture

CATALOG_SIZE = 60
INITIAL_STOCK = 100


# Package scope: its 68 quorum queues go as soon as the last e2e test is done, not at the
# end of the session (the broker's handle budget is shared). Short retry tiers keep the
# tok_flaky path (two transient failures) to seconds.
pipeline = pipeline_fixture(
    "pipeline",
    {"AMQP_RETRY_DELAYS_MS": "[1000,2000,4000]", "OUTBOX_POLL_INTERVAL_S": "0.5"},
    scope="package",
    seed=(CATALOG_SIZE, INITIAL_STOCK),
)


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


@pytest.fixture(scope="package")
async def auth(http: httpx.AsyncClient, pipeline: Pipeline) -> dict[str, str]:
    return await register_and_login(http, pipeline)
