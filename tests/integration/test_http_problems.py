"""The catch-all error handler of the shared HTTP app, over real HTTP: an unhandled exception
is a problem+json 500 that names no internals, and its traceback is logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from infra.devstack import free_port
from infra.http import create_http_app
from tests.integration.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.security]
SECRET = "mongodb://admin:hunter2@db.internal"


@asynccontextmanager
async def _no_runtime(app: FastAPI) -> AsyncIterator[None]:
    yield


@pytest.fixture
async def failing_app_url() -> AsyncIterator[str]:
    app = create_http_app("itest", _no_runtime)

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError(f"cannot reach {SECRET}")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout_s=10)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(serving, timeout=10)


async def test_an_unhandled_exception_is_a_problem_500_without_internals(
    failing_app_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="infra.http_errors"):
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{failing_app_url}/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem == {
        "type": "urn:order-pipeline:problem:internal_error",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "internal error; the cause was logged",
        "code": "internal_error",
    }
    assert "hunter2" not in response.text
    [record] = [r for r in caplog.records if r.name == "infra.http_errors"]
    assert record.exc_info is not None
    assert SECRET in str(record.exc_info[1])
