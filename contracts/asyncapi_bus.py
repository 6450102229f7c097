"""What the AsyncAPI documents of the other buses (contracts.asyncapi_nats, .asyncapi_redis)
share: RabbitMQ's document's messages and schemas (one envelope on every bus), re-addressed to
the bus's channels, with an operation per publication and the bus's channels and operations
per queue. Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.asyncapi import (
    ASYNCAPI_VERSION,
    CONTENT_TYPE,
    DOCUMENT_VERSION,
    SCHEMA_VERSION_HEADER,
    build_asyncapi,
)
from contracts.events import Event
from contracts.topology import PUBLICATIONS, SUBSCRIPTIONS, queue_name


@dataclass(frozen=True)
class BusDocument:
    title: str
    description: str
    server: dict[str, Any]
    # (event type, RabbitMQ's message of it) -> this bus's message
    message: Callable[[str, dict[str, Any]], dict[str, Any]]
    # (event type, RabbitMQ's channel of it) -> this bus's channel of its events
    event_channel: Callable[[str, dict[str, Any]], dict[str, Any]]
    # (service, event) -> the service's operation publishing it
    send: Callable[[str, type[Event]], dict[str, Any]]
    # (queue, event) -> the queue's own channels by name
    queue_channels: Callable[[str, type[Event]], dict[str, Any]]
    # (service, queue, event) -> the queue's operations by name
    queue_operations: Callable[[str, str, type[Event]], dict[str, Any]]


def build_bus_asyncapi(bus: BusDocument) -> dict[str, Any]:
    rabbit = build_asyncapi()
    messages = {name: bus.message(name, m) for name, m in rabbit["components"]["messages"].items()}
    channels = {name: bus.event_channel(name, c) for name, c in rabbit["channels"].items()}
    operations: dict[str, Any] = {}
    for service, published in PUBLICATIONS.items():
        for cls in published:
            operations[f"{service}_send{cls.event_type}"] = bus.send(service, cls)
    for service, consumed in SUBSCRIPTIONS.items():
        for cls in consumed:
            queue = queue_name(service, cls.event_type)
            channels.update(bus.queue_channels(queue, cls))
            operations.update(bus.queue_operations(service, queue, cls))
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": bus.title, "version": DOCUMENT_VERSION, "description": bus.description},
        "defaultContentType": CONTENT_TYPE,
        "servers": {"local": bus.server},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": rabbit["components"]["schemas"], "messages": messages},
    }


def text_headers_message(
    rabbit_message: dict[str, Any], properties: dict[str, str], version_key: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """RabbitMQ's message without its AMQP bindings, and the schemas of its headers on a bus
    whose headers are text: `properties` (name -> description) as strings, and the schema
    version JSON-encoded under `version_key`. The caller adds to them and sets "headers"."""
    message = {key: value for key, value in rabbit_message.items() if key != "bindings"}
    version = rabbit_message["headers"]["properties"][SCHEMA_VERSION_HEADER]["const"]
    schemas: dict[str, Any] = {
        name: {"type": "string", "description": text} for name, text in properties.items()
    }
    schemas[version_key] = {
        "type": "string",
        "const": str(version),
        "description": "The envelope's schema_version, JSON-encoded.",
    }
    return message, schemas


def channel_references(channel: str, event_type: str) -> dict[str, Any]:
    """An operation's channel and its message, by reference."""
    ref = f"#/channels/{_escape(channel)}"
    return {"channel": {"$ref": ref}, "messages": [{"$ref": f"{ref}/messages/{event_type}"}]}


def _escape(key: str) -> str:
    """A JSON pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")
