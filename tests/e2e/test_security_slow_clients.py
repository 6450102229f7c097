"""Slow clients against a running service process (the order service of the e2e pipeline,
default settings): a request head or body sent a byte every 2 s is cut off with a 408 within
its deadline, and a connection that sends nothing is closed too. Before, one such client held a
connection for as long as it liked (78 s and counting in the review)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from infra.http_errors import BODY_TIMEOUT_S
from infra.settings import HttpSettings
from tests.e2e.pipeline import Pipeline
from tests.e2e.slow_client import SlowOutcome, dribble

pytestmark = [pytest.mark.e2e, pytest.mark.security]
HEADER_TIMEOUT_S = HttpSettings().header_timeout_s
INTERVAL_S = 2.0
# Scheduling slack on a busy 2-core machine.
MARGIN_S = 3.0


def assert_timed_out(outcome: SlowOutcome, deadline_s: float) -> None:
    assert outcome.closed_after_s is not None, "the server never closed the connection"
    assert deadline_s - 0.5 <= outcome.closed_after_s <= deadline_s + MARGIN_S, outcome
    assert outcome.status == 408, outcome.received[:300]
    head, _, body = outcome.received.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head.lower()
    assert json.loads(body)["code"] == "request_timeout"


HEAD_REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100 + b"\r\n\r\n"
SLOW_BODY = json.dumps({"email": "slow@example.com", "password": "x" * 200}).encode()
SLOW_BODY_HEAD = (
    b"POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(SLOW_BODY)).encode() + b"\r\n\r\n"
)
KEPT_ALIVE_FIRST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
KEPT_ALIVE_NEXT = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100


@pytest.fixture(scope="module")
async def slow_clients(pipeline: Pipeline) -> AsyncIterator[dict[str, asyncio.Task[SlowOutcome]]]:
    """Every slow client of this module, started at once: each waits out a deadline of 10 or
    20 s, side by side rather than one after another. Each test checks its own."""
    port = pipeline.ports["order"]
    head_give_up_s = HEADER_TIMEOUT_S * 3
    clients = {
        "head": dribble(port, HEAD_REQUEST, INTERVAL_S, head_give_up_s),
        "nothing": dribble(port, b"", INTERVAL_S, head_give_up_s),
        "body": dribble(port, SLOW_BODY, INTERVAL_S, BODY_TIMEOUT_S * 2, head=SLOW_BODY_HEAD),
        "kept_alive": dribble(
            port, KEPT_ALIVE_NEXT, INTERVAL_S, head_give_up_s, head=KEPT_ALIVE_FIRST
        ),
    }
    tasks = {name: asyncio.create_task(client) for name, client in clients.items()}
    yield tasks
    for task in tasks.values():
        task.cancel()


async def test_a_request_head_sent_a_byte_at_a_time_is_cut_off(
    slow_clients: dict[str, asyncio.Task[SlowOutcome]],
) -> None:
    outcome = await slow_clients["head"]
    assert_timed_out(outcome, HEADER_TIMEOUT_S)
    assert 0 < outcome.bytes_sent < len(HEAD_REQUEST)


async def test_a_connection_that_sends_nothing_is_closed(
    slow_clients: dict[str, asyncio.Task[SlowOutcome]],
) -> None:
    assert_timed_out(await slow_clients["nothing"], HEADER_TIMEOUT_S)


async def test_a_body_sent_a_byte_at_a_time_is_cut_off(
    slow_clients: dict[str, asyncio.Task[SlowOutcome]],
) -> None:
    assert_timed_out(await slow_clients["body"], BODY_TIMEOUT_S)


async def test_the_next_request_on_a_kept_alive_connection_has_a_head_deadline_too(
    slow_clients: dict[str, asyncio.Task[SlowOutcome]],
) -> None:
    outcome = await slow_clients["kept_alive"]
    assert outcome.received.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 408" in outcome.received
    assert outcome.closed_after_s is not None
    assert outcome.closed_after_s <= HEADER_TIMEOUT_S + MARGIN_S
