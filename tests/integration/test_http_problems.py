"""The shared HTTP app and server configuration over real HTTP, with limits small enough to
reach: an unhandled exception is a problem+json 500 that names no internals (its traceback is
logged); an unparseable request, too many connections and too many requests in flight get
problems too."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from infra.devstack import free_port
from infra.http import create_http_app
from infra.http_server import server_config
from infra.settings import HttpSettings
from tests.integration.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.security]
SECRET = "mongodb://admin:hunter2@db.internal"
IN_FLIGHT = 2


@asynccontextmanager
async def _no_runtime(app: FastAPI) -> AsyncIterator[None]:
    yield


@pytest.fixture
def release() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
def holding() -> list[str]:
    """The /hold requests the app is handling right now."""
    return []


@pytest.fixture
async def failing_app_url(release: asyncio.Event, holding: list[str]) -> AsyncIterator[str]:
    app = create_http_app("itest", _no_runtime)

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError(f"cannot reach {SECRET}")

    @app.get("/hold")
    async def hold() -> dict[str, str]:
        holding.append("request")
        try:
            await asyncio.wait_for(release.wait(), timeout=20)
        finally:
            holding.remove("request")
        return {"held": "released"}

    port = free_port()
    # The services' own server configuration, with limits small enough to reach in a test.
    limits = HttpSettings(
        port=port, header_timeout_s=2, max_connections=5, max_requests_in_flight=IN_FLIGHT
    )
    server = uvicorn.Server(server_config(app, limits, log_config=None))
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


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    return answer


async def test_a_request_that_is_not_http_gets_a_400_problem(failing_app_url: str) -> None:
    port = int(failing_app_url.rsplit(":", 1)[1])
    answer = await _exchange(port, b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"application/problem+json" in head
    assert json.loads(body)["code"] == "bad_request"


async def test_past_the_connection_cap_a_new_connection_gets_a_503_problem(
    failing_app_url: str,
) -> None:
    port = int(failing_app_url.rsplit(":", 1)[1])
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    try:
        answer = await _exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert json.loads(body)["code"] == "too_many_connections"
    finally:
        for _, writer in held:
            writer.close()
    # The held connections sent no request head: each is closed at its deadline, and the
    # cap frees up again.
    async with httpx.AsyncClient(timeout=10) as client:
        response = await eventually(
            lambda: _status_of(client, f"{failing_app_url}/health"), timeout_s=10
        )
    assert response == 200


async def _status_of(client: httpx.AsyncClient, url: str) -> int | None:
    try:
        status = (await client.get(url)).status_code
    except httpx.HTTPError:
        return None
    return status if status == 200 else None


async def test_past_the_requests_in_flight_limit_a_request_gets_a_503_problem(
    failing_app_url: str, release: asyncio.Event, holding: list[str]
) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        held = [asyncio.create_task(client.get(f"{failing_app_url}/hold")) for _ in range(2)]
        await eventually(lambda: len(holding) == IN_FLIGHT, timeout_s=10)
        refused = await client.get(f"{failing_app_url}/health")
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["code"] == "overloaded"
        release.set()
        assert [(await task).status_code for task in held] == [200] * IN_FLIGHT
        assert (await client.get(f"{failing_app_url}/health")).status_code == 200
