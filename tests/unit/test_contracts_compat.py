"""Published event schemas may only change compatibly, unless versioned with an upcaster.

The checked-in contracts/schemas/<Type>.v<N>.json files are the record of what was published.
The current model of each event must accept everything its checked-in file accepted; a change
that would reject an old payload needs a new schema_version and an upcaster from the old one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.compat import breaking_changes
from contracts.docs import (
    DEFAULT_ROOT,
    ENVELOPE_TYPE,
    ENVELOPE_VERSION,
    SCHEMA_FILE,
    SCHEMAS_DIR,
    breaking_advice,
    envelope_schema_document,
    event_schema_document,
    schema_path,
    stale_files,
)
from contracts.events import EVENT_SCHEMAS
from contracts.versions import UPCASTERS, UnknownSchemaVersion, current_version, upcast_path

pytestmark = pytest.mark.unit

SCHEMAS = DEFAULT_ROOT / SCHEMAS_DIR
CHECKED_IN = sorted(path.name for path in SCHEMAS.glob("*.json"))
CURRENT = {event_type: version for (event_type, version) in EVENT_SCHEMAS}


def _load(name: str) -> Any:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def test_exported_documents_are_up_to_date() -> None:
    stale = stale_files(DEFAULT_ROOT)
    assert not stale, (
        "generated contract documents are stale; run `python -m contracts.docs` and commit:\n"
        + "\n".join(f"{path}: {problem}" for path, problem in stale.items())
    )


def test_every_schema_file_is_named_type_dot_version() -> None:
    assert CHECKED_IN, f"no schema files in {SCHEMAS}"
    assert all(SCHEMA_FILE.match(name) for name in CHECKED_IN), CHECKED_IN


def test_one_current_version_per_event_type() -> None:
    # EVENT_SCHEMAS holds current versions only; older ones are reached through upcasters.
    assert len(CURRENT) == len(EVENT_SCHEMAS)


@pytest.mark.parametrize("name", CHECKED_IN)
def test_a_published_schema_is_still_accepted(name: str) -> None:
    match = SCHEMA_FILE.match(name)
    assert match, name
    event_type, version = match["type"], int(match["version"])
    published = _load(name)
    if event_type == ENVELOPE_TYPE:
        assert version == ENVELOPE_VERSION, f"{name}: the envelope has a single version"
        changes = breaking_changes(published, envelope_schema_document(), name=event_type)
        assert not changes, breaking_advice(f"{SCHEMAS_DIR}/{name}", changes)
        return
    current = CURRENT.get(event_type)
    assert current is not None, (
        f"{name}: no event type {event_type} in EVENT_SCHEMAS. Removing an event strands its "
        f"messages; if it is retired on purpose (no producer, queues drained), delete the file."
    )
    assert version <= current, f"{name}: newer than {event_type} v{current} (version went back?)"
    if version == current:
        model = event_schema_document(EVENT_SCHEMAS[(event_type, version)])
        changes = breaking_changes(published, model, name=event_type)
        assert not changes, breaking_advice(f"{SCHEMAS_DIR}/{name}", changes)
    else:
        _assert_upcastable(event_type, version)


@pytest.mark.parametrize(("event_type", "current"), sorted(CURRENT.items()))
def test_every_older_version_is_recorded_and_upcastable(event_type: str, current: int) -> None:
    for version in range(1, current):
        path = DEFAULT_ROOT / schema_path(event_type, version)
        assert path.exists(), (
            f"{path.name} is missing: the schema of every published version stays checked in "
            f"(restore it from git history)"
        )
        _assert_upcastable(event_type, version)


def test_every_upcaster_belongs_to_an_older_version_of_a_known_event() -> None:
    for event_type, version in UPCASTERS:
        current = current_version(event_type)
        assert current is not None, f"upcaster for unknown event type {event_type}"
        assert version < current, (
            f"upcaster {event_type} v{version} -> v{version + 1} beyond v{current}"
        )


def _assert_upcastable(event_type: str, version: int) -> None:
    try:
        upcast_path(event_type, version)
    except UnknownSchemaVersion as error:
        pytest.fail(
            f"{event_type} v{version} was published but consumers could not read it: {error}. "
            f"Register the missing upcaster in contracts/versions.py."
        )


# The detection itself, on small hand-written schemas.

LINE = {
    "type": "object",
    "properties": {"sku": {"type": "string", "maxLength": 40}},
    "required": ["sku"],
    "additionalProperties": False,
}
BASE: dict[str, Any] = {
    "title": "Thing",
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "count": {"type": "integer", "minimum": 0},
        "kind": {"enum": ["a", "b"], "type": "string"},
        "note": {"anyOf": [{"type": "string", "maxLength": 100}, {"type": "null"}]},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
    },
    "required": ["id", "count"],
    "additionalProperties": False,
    "$defs": {"Line": LINE},
}


def changed(**properties: Any) -> dict[str, Any]:
    """BASE with some properties replaced (None removes one)."""
    merged = {**BASE["properties"], **properties}
    return {**BASE, "properties": {k: v for k, v in merged.items() if v is not None}}


def test_an_identical_schema_is_compatible() -> None:
    assert breaking_changes(BASE, json.loads(json.dumps(BASE))) == []


def test_a_new_optional_property_is_compatible() -> None:
    assert breaking_changes(BASE, changed(extra={"type": "string"})) == []


def test_widening_is_compatible() -> None:
    wider = changed(
        id={"anyOf": [{"type": "string"}, {"type": "null"}]},
        count={"type": "number"},
        kind={"enum": ["a", "b", "c"], "type": "string"},
        note={"type": ["string", "null"]},
    )
    assert breaking_changes(BASE, wider) == []


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (changed(count=None), "Thing.count: property removed"),
        (changed(count={"type": "string"}), "Thing.count: type changed from integer to string"),
        (
            {**changed(extra={"type": "string"}), "required": ["id", "count", "extra"]},
            "Thing.extra: new required property",
        ),
        ({**BASE, "required": ["id", "count", "kind"]}, "Thing.kind: optional property made"),
        (changed(kind={"enum": ["a"], "type": "string"}), "Thing.kind: value(s) 'b' no longer"),
        (changed(count={"type": "integer", "minimum": 1}), "Thing.count: minimum raised"),
        (changed(id={"type": "string", "maxLength": 10}), "Thing.id: maxLength 10 added"),
        (changed(id={"type": "string", "pattern": "^x"}), "Thing.id: pattern changed"),
        (
            changed(note={"anyOf": [{"type": "string", "maxLength": 50}, {"type": "null"}]}),
            "Thing.note: maxLength lowered from 100 to 50",
        ),
        (changed(note={"type": "string"}), "Thing.note: type changed from null to string"),
    ],
)
def test_breaking_changes_are_named(new: dict[str, Any], expected: str) -> None:
    changes = breaking_changes(BASE, new)
    assert any(change.startswith(expected) for change in changes), changes


def test_changes_inside_referenced_definitions_are_found() -> None:
    line = {**LINE, "properties": {"sku": {"type": "string", "maxLength": 20}}}
    new = {**BASE, "$defs": {"Line": line}}
    assert breaking_changes(BASE, new) == ["Thing.lines[].sku: maxLength lowered from 40 to 20"]


def test_forbidding_extra_properties_is_breaking() -> None:
    old = {"type": "object", "properties": {}}
    new = {"type": "object", "properties": {}, "additionalProperties": False}
    assert breaking_changes(old, new, name="Open") == [
        "Open: additional properties no longer allowed"
    ]


def test_recursive_definitions_terminate() -> None:
    tree = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
            }
        },
    }
    assert breaking_changes(tree, tree, name="Tree") == []


def test_a_shared_definition_is_reported_once() -> None:
    def pair(line: Any) -> dict[str, Any]:
        ref = {"$ref": "#/$defs/Line"}
        return {"type": "object", "properties": {"a": ref, "b": ref}, "$defs": {"Line": line}}

    narrower = {**LINE, "properties": {"sku": {"type": "string", "maxLength": 20}}}
    assert breaking_changes(pair(LINE), pair(narrower), name="P") == [
        "P.a.sku: maxLength lowered from 40 to 20"
    ]


def test_union_branches_are_matched_by_shape_not_position() -> None:
    cat = {"type": "object", "properties": {"meow": {"type": "string"}}, "required": ["meow"]}
    dog = {"type": "object", "properties": {"woof": {"type": "string"}}, "required": ["woof"]}
    defs = {"Cat": cat, "Dog": dog}
    old = {"anyOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}], "$defs": defs}
    reordered = {"anyOf": [{"$ref": "#/$defs/Dog"}, {"$ref": "#/$defs/Cat"}], "$defs": defs}
    without_dog = {"anyOf": [{"$ref": "#/$defs/Cat"}], "$defs": defs}
    assert breaking_changes(old, reordered, name="Pet") == []
    assert breaking_changes(old, without_dog, name="Pet") != []
