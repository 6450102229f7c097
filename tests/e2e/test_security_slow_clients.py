"""Slow clients against a running service process (the order service of the e2e pipeline,
default settings): a request head or body sent a byte every 2 s is cut off with a 408 within
its deadline, and a connection that sends nothing is closed too. Before, one such client held a
connection for as long as it liked (78 s and counting in the review)."""

from __future__ import annotations

import json

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


async def test_a_request_head_sent_a_byte_at_a_time_is_cut_off(pipeline: Pipeline) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100 + b"\r\n\r\n"
    outcome = await dribble(
        pipeline.ports["order"], request, INTERVAL_S, give_up_s=HEADER_TIMEOUT_S * 3
    )
    assert_timed_out(outcome, HEADER_TIMEOUT_S)
    assert 0 < outcome.bytes_sent < len(request)


async def test_a_connection_that_sends_nothing_is_closed(pipeline: Pipeline) -> None:
    outcome = await dribble(pipeline.ports["order"], b"", INTERVAL_S, HEADER_TIMEOUT_S * 3)
    assert_timed_out(outcome, HEADER_TIMEOUT_S)


async def test_a_body_sent_a_byte_at_a_time_is_cut_off(pipeline: Pipeline) -> None:
    body = json.dumps({"email": "slow@example.com", "password": "x" * 200}).encode()
    head = (
        b"POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    outcome = await dribble(
        pipeline.ports["order"], body, INTERVAL_S, give_up_s=BODY_TIMEOUT_S * 2, head=head
    )
    assert_timed_out(outcome, BODY_TIMEOUT_S)


async def test_the_next_request_on_a_kept_alive_connection_has_a_head_deadline_too(
    pipeline: Pipeline,
) -> None:
    first = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    outcome = await dribble(
        pipeline.ports["order"],
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100,
        INTERVAL_S,
        give_up_s=HEADER_TIMEOUT_S * 3,
        head=first,
    )
    assert outcome.received.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 408" in outcome.received
    assert outcome.closed_after_s is not None
    assert outcome.closed_after_s <= HEADER_TIMEOUT_S + MARGIN_S
