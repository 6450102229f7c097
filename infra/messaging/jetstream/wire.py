"""A message on JetStream: the body is the envelope's JSON, as on RabbitMQ; what AMQP keeps in
message properties travels in headers of their own, and the application headers (the failure
story, `x-attempt`, `traceparent`) are JSON-encoded.

NATS headers are text lines: a value may not hold a line break (the client turns CR/LF into
spaces, which would flatten a traceback) and has no type (the story's `x-attempts` is an
integer on RabbitMQ). JSON keeps both: `"line\\nline"`, `3`. A value that is not JSON (a
foreign publisher's) is read as the plain string it is; `infra.messaging.headers` then
validates what the consumer relies on, exactly as for an AMQP header.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from infra.messaging.hooks import Inbound

# The AMQP message properties the runtime reads, as headers.
EVENT_ID = "Event-Id"
EVENT_TYPE = "Event-Type"
CORRELATION_ID = "Correlation-Id"
# A retry copy is not handled before this moment (epoch milliseconds).
DUE_AT = "Retry-Due-At"
# JetStream's own: de-duplication id, and anything else the server adds.
MSG_ID = "Nats-Msg-Id"
_NATS_PREFIX = "Nats-"
PROPERTIES = frozenset({EVENT_ID, EVENT_TYPE, CORRELATION_ID, DUE_AT})


def encode(application: Mapping[str, Any], properties: Mapping[str, str | None]) -> dict[str, str]:
    """The NATS headers of a message: `properties` as they are (unset ones left out), the
    `application` headers JSON-encoded."""
    headers = {key: value for key, value in properties.items() if value}
    for key, value in application.items():
        if key not in PROPERTIES and not key.startswith(_NATS_PREFIX):
            headers[key] = json.dumps(value, default=str)
    return headers


def application_headers(raw: Mapping[str, str] | None) -> dict[str, Any]:
    """The application headers of a received message, decoded."""
    headers: dict[str, Any] = {}
    for key, text in (raw or {}).items():
        if key in PROPERTIES or key.startswith(_NATS_PREFIX):
            continue
        try:
            headers[key] = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            headers[key] = text
    return headers


def properties(raw: Mapping[str, str] | None) -> dict[str, str]:
    return {key: value for key, value in (raw or {}).items() if key in PROPERTIES}


def inbound(data: bytes, raw: Mapping[str, str] | None, subject: str) -> Inbound:
    """`subject`: where it was published, without the prefix (`events.order-placed`, the name
    RabbitMQ gives its exchange): the story's x-original-exchange."""
    raw = raw or {}
    return Inbound(
        body=data,
        headers=application_headers(raw),
        message_id=raw.get(EVENT_ID),
        type=raw.get(EVENT_TYPE),
        correlation_id=raw.get(CORRELATION_ID),
        exchange=subject,
    )


def due_at_ms(raw: Mapping[str, str] | None) -> int:
    """When a retry copy is due (0: now). A value that is not a number is due now: the
    consumer then handles the copy and its other headers are checked as usual."""
    try:
        return int((raw or {}).get(DUE_AT, "0"))
    except ValueError:
        return 0
