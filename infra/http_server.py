"""uvicorn's HTTP/1.1 protocol with the limits a public server needs against slow clients.

uvicorn has a keep-alive timeout but no deadline for reading a request head: a connection that
sends nothing, or one byte of its request line every few seconds, is held forever (any data
cancels the keep-alive timer). `GuardedH11Protocol` adds, per connection:
- a head deadline: a timer starts when the connection opens and when the first byte of each
  next request arrives, and stops once h11 has parsed the request head; if it fires first, the
  client gets a 408 problem and the connection is closed;
- a connection cap: past `max_connections` open connections, a new one gets a 503 problem
  and is closed at once (uvicorn's own `limit_concurrency` answers in plain text);
- a 400 problem for a request h11 cannot parse (uvicorn's answers in plain text).
`RequestsInFlightLimit` caps the requests being handled at once (503 problem past it): a client
that disconnects does not stop its request, so open connections alone do not bound the work
(an argon2 hash at 64 MiB per login, say).
The body has its own deadline in the ASGI layer (infra.http_errors.BodySizeLimit), which is
where the body is read; the head size is bounded by h11 (`max_header_bytes`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from infra.http_errors import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX, error_response
from infra.settings import HttpSettings

log = logging.getLogger(__name__)


class GuardedH11Protocol(H11Protocol):
    # Set on the subclass `guarded_protocol` makes for one server's settings.
    header_timeout_s: float = 10.0
    max_connections: int = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("refusing a connection: %d open", len(self.connections))
            self._refuse(503, "too_many_connections", "the server is at its connection limit")
            return
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and self._between_requests():
            self._arm_head_deadline()  # the first bytes of the next request on this connection
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # h11 parsed a request head: the app has it now
            self._disarm_head_deadline()

    def send_400_response(self, msg: str) -> None:
        self._disarm_head_deadline()
        self._refuse(400, "bad_request", "the request is not valid HTTP/1.1")

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or not self._between_requests():
            return
        log.info(
            "closing a connection that sent no request head within %s s", self.header_timeout_s
        )
        detail = f"no complete request head within {self.header_timeout_s:g} s"
        self._refuse(408, "request_timeout", detail)

    def _refuse(self, status: int, code: str, detail: str) -> None:
        """Answer outside any request cycle (h11 has no request to answer) and close."""
        if self.transport.is_closing():
            return
        self.transport.write(_raw_problem(status, code, detail))
        self.transport.close()


def _raw_problem(status: int, code: str, detail: str) -> bytes:
    phrase = HTTPStatus(status).phrase
    body = json.dumps(
        {
            "type": PROBLEM_TYPE_PREFIX + code,
            "title": phrase,
            "status": status,
            "detail": detail,
            "code": code,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class RequestsInFlightLimit:
    """At most `limit` HTTP requests handled at once; past it, 503 with Retry-After."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit
        self._in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if self._in_flight >= self._limit:
            response = error_response(503, "overloaded", "too many requests in flight; retry")
            response.headers["Retry-After"] = "1"
            await response(scope, receive, send)
            return
        self._in_flight += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self._in_flight -= 1


def guarded_protocol(settings: HttpSettings) -> type[GuardedH11Protocol]:
    attributes = {
        "header_timeout_s": settings.header_timeout_s,
        "max_connections": settings.max_connections,
    }
    return type("GuardedH11Protocol", (GuardedH11Protocol,), attributes)


def server_config(app: Any, settings: HttpSettings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration of every service: its HTTP limits, from HttpSettings."""
    return uvicorn.Config(
        RequestsInFlightLimit(app, settings.max_requests_in_flight),
        host=settings.host,
        port=settings.port,
        http=guarded_protocol(settings),
        timeout_keep_alive=settings.keep_alive_s,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        **options,
    )
