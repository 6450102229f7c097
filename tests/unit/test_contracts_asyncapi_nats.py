"""The AsyncAPI document of the pipeline on NATS JetStream (docs/asyncapi.nats.json): the
subjects, streams and consumers it names are the ones infra.messaging.jetstream uses."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.asyncapi import build_asyncapi
from contracts.asyncapi_nats import (
    DEFAULT_ACK_WAIT_S,
    DEFAULT_DUPLICATE_WINDOW_S,
    PROPERTY_HEADERS,
    build_nats_asyncapi,
)
from contracts.topology import PUBLICATIONS, SUBSCRIPTIONS, dead_letter_queue_name, queue_name
from infra.messaging.jetstream import wire
from infra.messaging.jetstream.names import Names, consumer_name, retry_consumer_name
from infra.settings import NatsSettings
from tests.unit.test_contracts_docs import unresolved_references

pytestmark = pytest.mark.unit

DOC = build_nats_asyncapi()
NAMES = Names()
QUEUES = {
    queue_name(service, cls.event_type): (service, cls.event_type)
    for service, events in SUBSCRIPTIONS.items()
    for cls in events
}


def test_it_is_an_asyncapi_3_document_for_the_local_nats_server() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    server = DOC["servers"]["local"]
    assert (server["host"], server["protocol"]) == ("127.0.0.1:4222", "nats")
    assert "JetStream" in DOC["info"]["title"]
    assert unresolved_references(DOC) == []


def test_the_channels_are_the_subjects_the_transport_uses() -> None:
    rabbit = build_asyncapi()
    events = {name: c for name, c in DOC["channels"].items() if name in rabbit["channels"]}
    assert sorted(events) == sorted(rabbit["channels"])
    for event_type, channel in events.items():
        assert channel["address"] == NAMES.event_subject(event_type)
        assert channel["x-jetstream"]["stream"] == NAMES.events_stream
    for queue in QUEUES:
        retries = DOC["channels"][NAMES.retry_subject(queue)]
        assert retries["x-jetstream"]["stream"] == NAMES.retries_stream
        dead = DOC["channels"][NAMES.dead_letter_subject(queue)]
        assert dead["address"] == dead_letter_queue_name(queue)
        assert dead["x-jetstream"]["stream"] == NAMES.dead_letter_stream(queue)
    assert len(DOC["channels"]) == len(events) + 2 * len(QUEUES)


def test_operations_follow_publications_subscriptions_and_name_the_consumers() -> None:
    operations = DOC["operations"]
    for service, published in PUBLICATIONS.items():
        for cls in published:
            assert operations[f"{service}_send{cls.event_type}"]["action"] == "send"
    for queue, (service, event_type) in QUEUES.items():
        receive = operations[f"{service}_receive{event_type}"]
        assert receive["x-jetstream"]["durable"] == consumer_name(queue)
        retry = operations[f"{service}_retry{event_type}"]
        assert f"`{retry_consumer_name(queue)}`" in retry["description"]
        dead = operations[f"{service}_deadLetter{event_type}"]
        assert dead["channel"] == {"$ref": f"#/channels/{dead_letter_queue_name(queue)}"}


def test_messages_are_the_rabbitmq_documents_with_the_nats_headers() -> None:
    rabbit = build_asyncapi()["components"]
    assert DOC["components"]["schemas"] == rabbit["schemas"]
    for name, message in DOC["components"]["messages"].items():
        assert message["payload"] == rabbit["messages"][name]["payload"]
        headers: dict[str, Any] = message["headers"]["properties"]
        assert {wire.EVENT_ID, wire.EVENT_TYPE, wire.CORRELATION_ID} == set(PROPERTY_HEADERS)
        assert set(PROPERTY_HEADERS) < set(headers)
        version = rabbit["messages"][name]["headers"]["properties"]["x-schema-version"]
        # Application headers are JSON text on NATS (infra.messaging.jetstream.wire).
        assert wire.encode({"x-schema-version": version["const"]}, {}) == {
            "x-schema-version": headers["x-schema-version"]["const"]
        }
        assert "bindings" not in message


def test_documented_defaults_match_the_runtime_settings() -> None:
    fields = NatsSettings.model_fields
    assert fields["ack_wait_s"].default == DEFAULT_ACK_WAIT_S
    assert fields["duplicate_window_s"].default == DEFAULT_DUPLICATE_WINDOW_S
