"""The services' OpenAPI documents: generated from the code, checked in, changed compatibly.

docs/openapi/<service>.json is what clients were given. The code must still produce it
(`python -m infra.openapi --check`), and `infra.openapi.breaking_changes` must see what would
break a client written against it. Pure: the apps are built, never started.
"""

from __future__ import annotations

import copy
import json
from importlib import metadata
from typing import Any

import pytest

from infra.devstack.services import SERVICES
from infra.openapi import DEFAULT_ROOT, OPENAPI_DIR, breaking_changes, document, stale

pytestmark = pytest.mark.unit


def _checked_in(service: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (DEFAULT_ROOT / OPENAPI_DIR / f"{service}.json").read_text()
    )
    return loaded


def test_checked_in_documents_are_what_the_code_generates() -> None:
    problems = stale(DEFAULT_ROOT)
    assert not problems, f"run `python -m infra.openapi` and commit: {problems}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_code_breaks_no_client_of_the_checked_in_document(service: str) -> None:
    assert breaking_changes(_checked_in(service), document(service)) == []


@pytest.mark.parametrize("service", SERVICES)
def test_version_is_the_package_version_and_operation_ids_are_short(service: str) -> None:
    doc = document(service)
    assert doc["info"]["version"] == metadata.version("order-pipeline")
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert all(i.isidentifier() and i.islower() and len(i) <= 30 for i in ids), ids
    assert {"health", "ready", "metrics"} <= set(ids)


ORDER = _checked_in("order")


def _changed(edit: Any) -> list[str]:
    new = copy.deepcopy(ORDER)
    edit(new)
    return breaking_changes(ORDER, new)


def test_a_removed_operation_or_a_renamed_id_is_breaking() -> None:
    assert _changed(lambda d: d["paths"]["/orders"].pop("post")) == [
        "POST /orders: operation removed"
    ]
    renamed = _changed(lambda d: d["paths"]["/orders"]["post"].update(operationId="create"))
    assert renamed == ["POST /orders: operationId 'place_order' -> 'create'"]


def test_a_new_required_request_field_is_breaking_an_optional_one_is_not() -> None:
    body = ORDER["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]
    name = body["schema"]["$ref"].rsplit("/", 1)[-1]

    def add(required: bool) -> Any:
        def edit(doc: dict[str, Any]) -> None:
            schema = doc["components"]["schemas"][name]
            schema["properties"]["coupon"] = {"type": "string"}
            if required:
                schema["required"] = [*schema.get("required", []), "coupon"]

        return edit

    assert _changed(add(required=False)) == []
    assert any("coupon" in change for change in _changed(add(required=True)))


def test_a_response_field_removed_is_breaking_one_added_is_not() -> None:
    ok = ORDER["paths"]["/orders/{order_id}"]["get"]["responses"]["200"]
    name = ok["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    field = sorted(ORDER["components"]["schemas"][name]["properties"])[0]

    def drop(doc: dict[str, Any]) -> None:
        doc["components"]["schemas"][name]["properties"].pop(field)

    def add(doc: dict[str, Any]) -> None:
        doc["components"]["schemas"][name]["properties"]["extra"] = {"type": "string"}

    # Every operation returning that schema is reported.
    assert f"GET /orders/{{order_id}}: response 200: field {field!r} removed" in _changed(drop)
    assert _changed(add) == []


def test_a_new_required_query_parameter_is_breaking() -> None:
    def edit(doc: dict[str, Any]) -> None:
        parameters = doc["paths"]["/orders"]["get"].setdefault("parameters", [])
        parameters.append({"in": "query", "name": "shop", "required": True, "schema": {}})

    assert _changed(edit) == ["GET /orders: new required query parameter 'shop'"]
