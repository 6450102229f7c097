"""A message as the fields of a stream entry, and back.

`body` is the envelope's JSON, byte for byte; `message_id`, `type`, `correlation_id` and
`exchange` (the logical exchange, `events.<type>`, that RabbitMQ would name) beside it; every
header (the story, `x-attempt`, `traceparent`, `x-schema-version`) is one field `h:<name>`
holding its value as JSON, so an integer stays an integer (the attempt header is validated as
one) and `redis-cli XRANGE` shows the story as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from infra.messaging.hooks import Inbound

HEADER_PREFIX = "h:"
Fields = dict[str, bytes | str]


def to_fields(message: Inbound) -> Fields:
    fields: Fields = {"body": message.body, "exchange": message.exchange}
    for name, value in (
        ("message_id", message.message_id),
        ("type", message.type),
        ("correlation_id", message.correlation_id),
    ):
        if value is not None:
            fields[name] = value
    for key, header in message.headers.items():
        fields[HEADER_PREFIX + key] = json.dumps(header, default=str)
    return fields


def from_fields(raw: Mapping[bytes, bytes]) -> Inbound:
    """Whatever an entry holds (a hostile producer can add anything): fields it does not know
    are ignored; a header that is not JSON arrives as the text it is (and the consumer's
    checks reject it if it matters)."""
    headers: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.decode("utf-8", "replace")
        if name.startswith(HEADER_PREFIX):
            headers[name.removeprefix(HEADER_PREFIX)] = _header(value)
    return Inbound(
        body=raw.get(b"body", b""),
        headers=headers,
        message_id=_text(raw.get(b"message_id")),
        type=_text(raw.get(b"type")),
        correlation_id=_text(raw.get(b"correlation_id")),
        exchange=_text(raw.get(b"exchange")) or "",
    )


def with_headers(message: Inbound, headers: Mapping[str, Any]) -> Inbound:
    return Inbound(
        body=message.body,
        headers=dict(headers),
        message_id=message.message_id,
        type=message.type,
        correlation_id=message.correlation_id,
        exchange=message.exchange,
    )


def _header(value: bytes) -> Any:
    text = value.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def entries_of(reply: Any) -> list[tuple[str, Inbound]]:
    """An XRANGE reply (id, fields pairs) as (id, message) pairs; deleted entries skipped."""
    return [(_text(i) or "", from_fields(f)) for i, f in reply or [] if f is not None]
