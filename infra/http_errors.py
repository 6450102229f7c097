"""One error shape for every service: RFC 9457 problem details, `application/problem+json`.

    {"type": "urn:order-pipeline:problem:<code>", "title": "Conflict", "status": 409,
     "detail": "...", "code": "<code>", "errors"?: [{"loc", "msg", "type"}]}

`code` (an extension member) is machine-readable and stable, and `type` is the same code as an
absolute URI; `title` is the status's phrase, `detail` is for humans. Validation errors, unknown
routes, oversized bodies, backing-service outages and unhandled exceptions all come out in this
shape; an unhandled exception logs its traceback and tells the client nothing of it.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
# A body (at most MAX_BODY_BYTES) must arrive within this many seconds of the request head:
# 3.2 KiB/s at worst, far below any real client.
BODY_TIMEOUT_S = 20.0
PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:order-pipeline:problem:"

_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class Problem(BaseModel):
    """An RFC 9457 problem details object, with this project's `code` extension member."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


class ApiError(HTTPException):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, message, headers)
        self.code = code


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for these statuses; `document_problems` gives every error
    response its problem+json content."""
    return {s: {"description": _CODES.get(s, "error")} for s in statuses}


def document_problems(app: FastAPI) -> None:
    """Make the app's OpenAPI document say what the handlers do: every 4xx/5xx response of
    every operation (FastAPI's automatic 422 included) is `application/problem+json`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        problem = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if status[:1] in {"4", "5"}:
                        response["content"] = problem
        # FastAPI's own validation-error schemas describe a body this API never sends.
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    """A problem response; `extensions` adds members of its own (RFC 9457 section 3.2)."""
    problem = Problem(
        type=PROBLEM_TYPE_PREFIX + code,
        title=_title(status),
        status=status,
        detail=message,
        code=code,
        errors=details,
    )
    body = {**(extensions or {}), **problem.model_dump(mode="json", exclude_none=True)}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        code = getattr(error, "code", None) or _CODES.get(error.status_code, "error")
        response = error_response(error.status_code, code, str(error.detail))
        response.headers.update(error.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()
        ]
        summary = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in problems[:3]
        )
        return error_response(422, "invalid_request", summary, problems)

    @app.exception_handler(PyMongoError)
    @app.exception_handler(RedisError)
    async def backing_service_down(request: Request, error: Exception) -> JSONResponse:
        # A database or cache outage is not the client's fault and is worth retrying.
        log.warning(
            "%s %s failed: %s: %s", request.method, request.url.path, type(error).__name__, error
        )
        response = error_response(503, "unavailable", "a backing service is unavailable; retry")
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(Exception)
    async def unhandled(request: Request, error: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware calls this for anything no other handler took, then
        # re-raises (uvicorn logs it once more). The traceback goes to the log; the client gets
        # the shape and no internals.
        log.error(
            "unhandled %s on %s %s",
            type(error).__name__,
            request.method,
            request.url.path,
            exc_info=error,
        )
        return error_response(500, "internal_error", "internal error; the cause was logged")


class BodySizeLimit:
    """Refuse request bodies over `limit` bytes with 413, whether or not Content-Length is
    sent, and bodies not received within `read_timeout_s` with 408 (a client sending a byte
    every few seconds would otherwise hold the connection and this read forever). The body is
    read before the app runs and replayed to it: bodies here are small, and the app never sees
    a half-read request. A client that disconnects mid-body is dropped without running the app.
    """

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, read_timeout_s: float = BODY_TIMEOUT_S
    ) -> None:
        self._app = app
        self._limit = limit
        self._read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._limit:
            await self._refuse(scope, receive, send, 413, "payload_too_large")
            return
        try:
            async with asyncio.timeout(self._read_timeout_s):
                messages = await self._read_body(receive)
        except TimeoutError:
            await self._refuse(scope, receive, send, 408, "request_timeout")
            return
        if messages is None:
            await self._refuse(scope, receive, send, 413, "payload_too_large")
            return
        if messages and messages[-1]["type"] == "http.disconnect":
            return  # nobody left to answer

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self._app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> list[Message] | None:
        """The request's messages up to the end of its body; None past the limit."""
        messages: list[Message] = []
        size, more = 0, True
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
            if size > self._limit:
                return None
        return messages

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, code: str
    ) -> None:
        detail = (
            f"request body over {self._limit} bytes"
            if status == 413
            else f"request body not received within {self._read_timeout_s:g} s"
        )
        response = error_response(status, code, detail)
        if status == 408:
            # A client this slow gets no more time. After a 413 the server reads and drops the
            # rest of the body instead (closing mid-upload would cut the answer off); the
            # head deadline of the connection's next request bounds that (infra.http_server).
            response.headers["Connection"] = "close"
        await response(scope, receive, send)
