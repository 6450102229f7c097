"""Envelope <-> AMQP message. JSON only (no pickle on the wire), validated on the way in."""

from __future__ import annotations

import json
from typing import Any

import aio_pika
import aiormq
from pydantic import ValidationError

from contracts.envelope import Envelope
from contracts.events import EVENT_SCHEMAS, Event
from contracts.topology import exchange_name
from contracts.versions import UnknownSchemaVersion, UpcastFailed, upcast
from infra.messaging.errors import InvalidMessage
from infra.messaging.hooks import Inbound

CONTENT_TYPE = "application/json"
MAX_BODY_BYTES = 256 * 1024


def encode(envelope: Envelope, headers: dict[str, Any] | None = None) -> aio_pika.Message:
    """`envelope` as an aio-pika message (copies, tests, other buses). Broker.publish writes
    the same body and properties through `amqp_properties` instead."""
    return aio_pika.Message(
        body=envelope.model_dump_json().encode(),
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(envelope.event_id),
        correlation_id=envelope.correlation_id,
        type=envelope.event_type,
        app_id=envelope.producer,
        timestamp=envelope.occurred_at,
        headers={"x-schema-version": envelope.schema_version, **(headers or {})},
    )


def amqp_properties(
    envelope: Envelope, headers: dict[str, Any] | None = None
) -> aiormq.spec.Basic.Properties:
    """The AMQP properties `encode` gives `envelope`'s message, built directly: an
    aio_pika.Message checks and converts each field on assignment, which cost several times
    the JSON encoding of the body, on every publish."""
    return aiormq.spec.Basic.Properties(
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
        message_id=str(envelope.event_id),
        correlation_id=envelope.correlation_id,
        message_type=envelope.event_type,
        app_id=envelope.producer,
        timestamp=envelope.occurred_at,
        headers={"x-schema-version": envelope.schema_version, **(headers or {})},
        priority=0,  # as aio_pika.Message sets it: the same frames either way
    )


def inbound_of(envelope: Envelope, headers: dict[str, Any] | None = None) -> Inbound:
    """`envelope` as a consumer receives it from its event type's exchange (or stream)."""
    message = encode(envelope, headers)
    return Inbound(
        body=message.body,
        headers=dict(message.headers or {}),
        message_id=message.message_id,
        type=message.type,
        correlation_id=message.correlation_id,
        exchange=exchange_name(envelope.event_type),
    )


def decode(body: bytes) -> tuple[Envelope, Event]:
    """Raise InvalidMessage with a reason an operator can act on, and only InvalidMessage.

    An older schema version with an upcaster path is brought to the current version first; the
    returned envelope then carries the current version and the upcast payload.
    """
    try:
        return _decode(body)
    except InvalidMessage:
        raise
    except RecursionError as error:
        raise InvalidMessage("body nested too deeply to decode") from error
    except Exception as error:
        # Decoding is a pure function of the bytes: whatever it raises (an integer literal
        # over Python's digit limit, an upcaster's KeyError...) will be raised again on
        # every retry, so it is a permanent failure, never a transient one.
        raise InvalidMessage(f"undecodable body: {type(error).__name__}: {error}"[:500]) from error


def _decode(body: bytes) -> tuple[Envelope, Event]:
    if len(body) > MAX_BODY_BYTES:
        raise InvalidMessage(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidMessage(f"body is not JSON: {error}") from error
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as error:
        raise InvalidMessage(f"invalid envelope: {_summary(error)}") from error
    try:
        version, payload = upcast(envelope.event_type, envelope.schema_version, envelope.payload)
    except (UnknownSchemaVersion, UpcastFailed) as error:
        raise InvalidMessage(str(error)) from error
    upcast_note = ""
    if version != envelope.schema_version:
        upcast_note = f" (upcast from v{envelope.schema_version} to v{version})"
        # Handlers (and whatever they store) see one version per type: the current one.
        envelope = envelope.model_copy(update={"schema_version": version, "payload": payload})
    schema = EVENT_SCHEMAS[(envelope.event_type, version)]
    try:
        event = schema.model_validate(envelope.payload)
    except ValidationError as error:
        raise InvalidMessage(
            f"invalid {envelope.event_type} payload{upcast_note}: {_summary(error)}"
        ) from error
    if event.aggregate_id != envelope.correlation_id:
        raise InvalidMessage("payload aggregate id does not match the envelope's correlation_id")
    return envelope, event


def _summary(error: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in item['loc']) or '<root>'}: {item['msg']}"
        for item in error.errors()[:5]
    ]
    return "; ".join(parts)
