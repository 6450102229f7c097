"""The AsyncAPI document of the pipeline on Redis Streams (docs/asyncapi.redis.json): the
streams, consumer groups, schedule keys and entry fields it names are the ones
infra.messaging.redisbus uses."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.asyncapi import build_asyncapi
from contracts.asyncapi_redis import (
    BODY_FIELD,
    DEFAULT_MAX_STREAM_LENGTH,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    HEADER_PREFIX,
    PROPERTY_FIELDS,
    STORY_HEADERS,
    build_redis_asyncapi,
    header_field,
)
from contracts.envelope import Envelope
from contracts.events import OrderLine, OrderPlaced
from contracts.topology import PUBLICATIONS, SUBSCRIPTIONS, dead_letter_queue_name, queue_name
from infra.messaging import codec, story
from infra.messaging.redisbus import fields
from infra.messaging.redisbus.keys import Keys
from infra.settings import DEFAULT_BUS_URLS, RedisBusSettings
from tests.unit.test_contracts_docs import unresolved_references

pytestmark = pytest.mark.unit

DOC = build_redis_asyncapi()
KEYS = Keys()
QUEUES = {
    queue_name(service, cls.event_type): (service, cls.event_type)
    for service, events in SUBSCRIPTIONS.items()
    for cls in events
}


def test_it_is_an_asyncapi_3_document_for_the_local_bus_redis() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    server = DOC["servers"]["local"]
    assert (server["host"], server["pathname"], server["protocol"]) == (
        "127.0.0.1:6380",
        "/0",
        "redis",
    )
    assert f"redis://{server['host']}{server['pathname']}" == DEFAULT_BUS_URLS["redis"]
    assert "Redis Streams" in DOC["info"]["title"]
    assert unresolved_references(DOC) == []


def test_event_channels_are_the_streams_with_a_group_per_subscribing_queue() -> None:
    rabbit = build_asyncapi()
    events = {name: c for name, c in DOC["channels"].items() if name in rabbit["channels"]}
    assert sorted(events) == sorted(rabbit["channels"])
    for event_type, channel in events.items():
        assert channel["address"] == KEYS.events(event_type)
        groups = [queue for queue, (_, consumed) in QUEUES.items() if consumed == event_type]
        assert channel["x-redis"]["consumerGroups"] == groups


def test_each_queue_has_its_retry_stream_schedule_and_dead_letter_stream() -> None:
    channels = DOC["channels"]
    for queue in QUEUES:
        retries = channels[KEYS.retries(queue)]
        assert retries["address"] == KEYS.retries(queue)
        assert retries["x-redis"]["consumerGroups"] == [queue]
        parked = channels[KEYS.parked(queue)]
        assert parked["address"] == KEYS.parked(queue)
        assert parked["x-redis"]["schedule"] == {"key": KEYS.schedule(queue), "type": "zset"}
        dead = channels[dead_letter_queue_name(queue)]
        assert dead["address"] == KEYS.dead_letters(queue)
        assert KEYS.queue_of_dead_letters(dead["address"]) == queue
    assert len(channels) == len(build_asyncapi()["channels"]) + 3 * len(QUEUES)


def test_operations_follow_publications_subscriptions_and_name_the_groups() -> None:
    operations = DOC["operations"]
    for service, published in PUBLICATIONS.items():
        for cls in published:
            send = operations[f"{service}_send{cls.event_type}"]
            assert send["action"] == "send"
            assert send["channel"] == {"$ref": f"#/channels/{cls.event_type}"}
    for queue, (service, event_type) in QUEUES.items():
        receive = operations[f"{service}_receive{event_type}"]
        assert receive["x-redis"]["consumerGroup"] == queue
        assert f"`{KEYS.events(event_type)}`" in receive["description"]
        retry = operations[f"{service}_retry{event_type}"]
        assert retry["channel"] == {"$ref": f"#/channels/{KEYS.retries(queue)}"}
        park = operations[f"{service}_park{event_type}"]
        assert park["channel"] == {"$ref": f"#/channels/{KEYS.parked(queue)}"}
        dead = operations[f"{service}_deadLetter{event_type}"]
        assert dead["channel"] == {"$ref": f"#/channels/{KEYS.dead_letters(queue)}"}


def test_messages_document_the_fields_of_an_entry_the_publisher_writes() -> None:
    rabbit = build_asyncapi()["components"]
    assert DOC["components"]["schemas"] == rabbit["schemas"]
    envelope = Envelope.wrap(
        OrderPlaced(
            order_id="o-1",
            customer_id="c-1",
            lines=[OrderLine(sku="SKU-0001", quantity=1)],
            payment_method="tok_ok",
        ),
        producer="order",
    )
    entry = fields.to_fields(codec.inbound_of(envelope, {"traceparent": "00-ab-cd-01"}))
    assert fields.HEADER_PREFIX == HEADER_PREFIX
    message = DOC["components"]["messages"]["OrderPlaced"]
    assert message["payload"] == rabbit["messages"]["OrderPlaced"]["payload"]
    assert "bindings" not in message
    headers: dict[str, Any] = message["headers"]["properties"]
    # Every field the publisher writes is documented, the body as the payload.
    assert set(entry) == {BODY_FIELD, *headers}
    assert set(PROPERTY_FIELDS) < set(headers)
    assert set(message["headers"]["required"]) <= set(entry)
    for name, schema in headers.items():
        if "const" in schema:
            assert schema["const"] == entry[name]
    assert headers[header_field("x-schema-version")]["const"] == "1"


def test_the_story_fields_are_the_ones_a_failure_writes() -> None:
    written = story.for_dead_letter(
        story.for_retry(
            story.failure_story(
                {}, ValueError("boom"), service="s", queue="q", event_id="e",
                event_type="OrderPlaced", exchange="events.order-placed",
            ),
            1,
        ),
        2,
        "rejected",
    )  # fmt: skip
    assert set(STORY_HEADERS) == set(written)
    described = DOC["components"]["messages"]["OrderPlaced"]["headers"]["description"]
    for header in STORY_HEADERS:
        assert f"`{HEADER_PREFIX}{header}`" in described


def test_documented_defaults_match_the_runtime_settings() -> None:
    settings = RedisBusSettings.model_fields
    assert settings["visibility_timeout_s"].default == DEFAULT_VISIBILITY_TIMEOUT_S
    assert settings["max_stream_length"].default == DEFAULT_MAX_STREAM_LENGTH
    assert settings["namespace"].default == ""  # the documented keys carry no prefix
