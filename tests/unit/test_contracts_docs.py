"""The generated AsyncAPI document and schema files: content, determinism, the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contracts import topology
from contracts.asyncapi import (
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_RETRY_DELAYS_MS,
    DEFAULT_RETRY_JITTER,
    build_asyncapi,
)
from contracts.docs import (
    ASYNCAPI_DOCUMENTS,
    ASYNCAPI_PATH,
    expected_files,
    main,
    render,
    schema_path,
)
from contracts.envelope import Envelope
from contracts.events import EVENT_SCHEMAS, OrderLine, OrderPlaced
from infra.settings import AmqpSettings

pytestmark = pytest.mark.unit

DOC = build_asyncapi()
TYPES = sorted(event_type for event_type, _ in EVENT_SCHEMAS)


def test_it_is_an_asyncapi_3_document_for_the_local_broker() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    assert {"title", "version", "description"} <= DOC["info"].keys()
    server = DOC["servers"]["local"]
    assert (server["host"], server["protocol"]) == ("127.0.0.1:5672", "amqp")
    assert server["description"]


def test_one_channel_per_fanout_exchange() -> None:
    assert sorted(DOC["channels"]) == TYPES
    for event_type, channel in DOC["channels"].items():
        assert channel["address"] == topology.exchange_name(event_type)
        exchange = channel["bindings"]["amqp"]["exchange"]
        assert exchange == {
            "name": topology.exchange_name(event_type),
            "type": "fanout",
            "durable": True,
            "autoDelete": False,
            "vhost": "/",
        }
        assert channel["messages"] == {event_type: {"$ref": f"#/components/messages/{event_type}"}}


def test_operations_follow_publications_and_subscriptions() -> None:
    expected = {
        (service, "send", cls.event_type)
        for service, events in topology.PUBLICATIONS.items()
        for cls in events
    } | {
        (service, "receive", cls.event_type)
        for service, events in topology.SUBSCRIPTIONS.items()
        for cls in events
    }
    found = {
        (op_id.split("_")[0], op["action"], op["channel"]["$ref"].rsplit("/", 1)[1])
        for op_id, op in DOC["operations"].items()
    }
    assert found == expected


def test_a_receive_operation_names_its_queue_dlq_and_retry_tiers() -> None:
    operation = DOC["operations"]["inventory_receiveOrderPlaced"]
    queue = topology.queue_name("inventory", "OrderPlaced")
    binding = operation["bindings"]["amqp"]
    assert binding["ack"] is True
    assert binding["x-queue"]["name"] == queue
    assert binding["x-queue"]["deadLetterQueue"] == topology.dead_letter_queue_name(queue)
    assert binding["x-queue"]["retryQueues"] == [
        topology.retry_tier_name("inventory", variant)
        for delay in DEFAULT_RETRY_DELAYS_MS
        for variant in topology.jittered_delays(delay, DEFAULT_RETRY_JITTER)
    ]
    assert f"`{topology.dead_letter_queue_name(queue)}`" in operation["description"]


def test_documented_defaults_match_the_runtime_settings() -> None:
    fields = AmqpSettings.model_fields
    assert list(DEFAULT_RETRY_DELAYS_MS) == fields["retry_delays_ms"].default
    assert fields["retry_jitter"].default == DEFAULT_RETRY_JITTER
    assert fields["delivery_limit"].default == DEFAULT_DELIVERY_LIMIT


def test_every_reference_resolves() -> None:
    assert unresolved_references(DOC) == []


def unresolved_references(document: dict[str, Any]) -> list[str]:
    def walk(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [ref for value in node.values() for ref in walk(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in walk(value)]
        return []

    def resolves(ref: str) -> bool:
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                return False
            target = target[part]
        return True

    refs = walk(document)
    assert refs  # a document without references would pass vacuously
    return [ref for ref in refs if not resolves(ref)]


def test_a_real_envelope_matches_its_message_schema() -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")  # comes with schemathesis (test extra)
    placed = OrderPlaced(
        order_id="o-1",
        customer_id="c-1",
        lines=[OrderLine(sku="SKU-1", quantity=2)],
        payment_method="tok_ok",
    )
    wire = json.loads(Envelope.wrap(placed, producer="order").model_dump_json())
    message = DOC["components"]["messages"]["OrderPlaced"]
    # The message schema refers into components; give the validator the whole namespace.
    validator = jsonschema_rs.Draft202012Validator(
        {**message["payload"], "components": DOC["components"]}
    )
    assert validator.is_valid(wire)
    assert not validator.is_valid({**wire, "event_type": "OrderRejected"})
    assert not validator.is_valid({**wire, "payload": {**wire["payload"], "lines": []}})
    assert message["headers"]["properties"]["x-schema-version"]["const"] == placed.schema_version


def test_generation_is_deterministic() -> None:
    assert expected_files() == expected_files()
    assert render(build_asyncapi()) == render(DOC)
    assert set(expected_files()) == {
        *ASYNCAPI_DOCUMENTS,
        schema_path("Envelope", 1),
        *(schema_path(event_type, version) for event_type, version in EVENT_SCHEMAS),
    }


def test_write_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path), "--check"]) == 1
    missing = capsys.readouterr().err
    assert "docs/asyncapi.json: missing" in missing
    assert "docs/asyncapi.nats.json: missing" in missing
    assert "docs/asyncapi.redis.json: missing" in missing
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--root", str(tmp_path), "--check"]) == 0
    assert main(["--root", str(tmp_path)]) == 0
    assert "nothing to do" in capsys.readouterr().out

    stale = tmp_path / ASYNCAPI_PATH
    stale.write_text(stale.read_text().replace('"3.0.0"', '"2.6.0"'))
    assert main(["--root", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "docs/asyncapi.json: differs" in err
    assert '-  "asyncapi": "2.6.0"' in err


def test_the_command_refuses_to_overwrite_a_published_schema_with_a_breaking_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(tmp_path)]) == 0
    version = OrderPlaced.schema_version
    published = tmp_path / schema_path("OrderPlaced", version)
    schema = json.loads(published.read_text())
    # As if this version had been published with a field the model has since dropped.
    schema["properties"]["retired_field"] = {"type": "string"}
    published.write_text(render(schema))
    older = tmp_path / schema_path("Retired", 1)
    older.write_text("{}\n")
    asyncapi_before = (tmp_path / ASYNCAPI_PATH).read_text()

    assert main(["--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "OrderPlaced.retired_field: property removed" in err
    assert f"Bump OrderPlaced.schema_version to {version + 1}" in err
    assert json.loads(published.read_text()) == schema  # untouched: nothing written at all
    assert (tmp_path / ASYNCAPI_PATH).read_text() == asyncapi_before
    assert older.exists()  # files of other versions are never removed

    assert main(["--root", str(tmp_path), "--check"]) == 1
    assert "breaking change to a published schema" in capsys.readouterr().err


@pytest.mark.parametrize("key", sorted(EVENT_SCHEMAS))
def test_component_schemas_are_the_models_schemas(key: tuple[str, int]) -> None:
    cls = EVENT_SCHEMAS[key]
    own = cls.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = own.pop("$defs", {})
    schemas = DOC["components"]["schemas"]
    assert schemas[cls.__name__] == own
    for name, definition in definitions.items():
        assert schemas[name] == definition
