"""Is a new JSON Schema of an event a breaking change from the published one?

"Breaking" means: a payload the old schema accepted may be rejected by the new one. That is the
direction upcasters repair (a new consumer reading the old messages still in queues, retry
tiers, DLQs and outboxes), so every breaking change needs a version bump and an upcaster.

Detected, recursively through properties, array items, `$ref`s and `anyOf`/`oneOf` branches:
a property removed, a type changed or narrowed, a new required property (or an optional one
made required), an enum or const value removed, a pattern or format changed or added, extra
properties forbidden, and bounds added or tightened (minimum/maxLength/maxItems...). Titles,
descriptions, defaults and examples are ignored. It is a deliberately simple, conservative
check: it may call a harmless change breaking (e.g. a rewritten but equivalent pattern), never
the reverse for the constructs pydantic emits.

Pure: schemas in, messages out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Schema = Mapping[str, Any]

# Bounds that reject more values when they grow, and those that reject more when they shrink.
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    type(None): "null",
    list: "array",
    dict: "object",
}


def breaking_changes(old: Schema, new: Schema, *, name: str = "") -> list[str]:
    """Every breaking difference from `old` to `new`, as "<path>: <what>"; empty if none.

    `$ref`s are resolved as local JSON pointers within each schema's own document.
    """
    label = name or str(old.get("title") or new.get("title") or "<root>")
    # A definition used in several places is reported once.
    return list(dict.fromkeys(_Comparison(old, new).compare(old, new, label)))


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self._old_root = old_root
        self._new_root = new_root
        # Each pair of referenced definitions is compared once and its result reused; None
        # marks a comparison in progress, reached again only through a recursive model.
        self._memo: dict[tuple[str, str], list[str] | None] = {}

    def compare(self, old: Schema, new: Schema, path: str) -> list[str]:
        pair = (str(old.get("$ref", "")), str(new.get("$ref", "")))
        if pair == ("", ""):
            return self._compare_resolved(old, new, path)
        if pair in self._memo:
            return list(self._memo[pair] or [])
        self._memo[pair] = None
        result = self._compare_resolved(old, new, path)
        self._memo[pair] = result
        return result

    def _compare_resolved(self, old: Schema, new: Schema, path: str) -> list[str]:
        old, new = _resolve(self._old_root, old), _resolve(self._new_root, new)
        old_variants, new_variants = _variants(self._old_root, old), _variants(self._new_root, new)
        if len(old_variants) == 1 and len(new_variants) == 1:
            return self._compare_variant(old_variants[0], new_variants[0], path)
        problems: list[str] = []
        # Each accepted old shape must still be accepted by some new branch.
        for variant in old_variants:
            attempts = [self._compare_variant(variant, other, path) for other in new_variants]
            if all(attempts):
                # None fits: report against the closest branch, the likeliest intended match.
                closest: list[str] = min(attempts, key=len)
                problems.extend(closest)
        return problems

    def _compare_variant(self, old: Schema, new: Schema, path: str) -> list[str]:
        old_types, new_types = _types(old), _types(new)
        if not _accepts(new_types, old_types):
            return [f"{path}: type changed from {_show(old_types)} to {_show(new_types)}"]
        problems = _compare_values(old, new, path)
        problems += _compare_bounds(old, new, path)
        if "object" in old_types and "object" in new_types:
            problems += self._compare_objects(old, new, path)
        if "array" in old_types and "array" in new_types and "items" in new:
            problems += self.compare(old.get("items", {}), new["items"], f"{path}[]")
        return problems

    def _compare_objects(self, old: Schema, new: Schema, path: str) -> list[str]:
        problems: list[str] = []
        old_properties: Schema = old.get("properties", {})
        new_properties: Schema = new.get("properties", {})
        for key, old_property in old_properties.items():
            if key not in new_properties:
                problems.append(f"{path}.{key}: property removed")
            else:
                problems += self.compare(old_property, new_properties[key], f"{path}.{key}")
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for key in sorted(new_required - old_required):
            made = "optional property made required" if key in old_properties else None
            problems.append(f"{path}.{key}: {made or 'new required property'}")
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)
        if old_extra is not False and new_extra is False:
            problems.append(f"{path}: additional properties no longer allowed")
        elif isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            problems += self.compare(old_extra, new_extra, f"{path}.*")
        return problems


def _compare_values(old: Schema, new: Schema, path: str) -> list[str]:
    """enum/const, pattern, format, multipleOf, uniqueItems: what restricts values."""
    problems: list[str] = []
    new_allowed = _allowed_values(new)
    if new_allowed is not None:
        old_allowed = _allowed_values(old)
        if old_allowed is None:
            problems.append(f"{path}: restricted to the values {_show_values(new_allowed)}")
        else:
            removed = [value for value in old_allowed if value not in new_allowed]
            if removed:
                problems.append(f"{path}: value(s) {_show_values(removed)} no longer allowed")
    for key in ("pattern", "format"):
        if key in new and new[key] != old.get(key):
            problems.append(f"{path}: {key} changed from {old.get(key)!r} to {new[key]!r}")
    if "multipleOf" in new and (
        "multipleOf" not in old or old["multipleOf"] % new["multipleOf"] != 0
    ):
        problems.append(f"{path}: multipleOf changed to {new['multipleOf']}")
    if new.get("uniqueItems") and not old.get("uniqueItems"):
        problems.append(f"{path}: items must now be unique")
    if new.get("allOf") and new.get("allOf") != old.get("allOf"):
        # Not analysed (pydantic does not emit it): any change is reported, to be safe.
        problems.append(f"{path}: allOf changed (not analysed; treat as breaking)")
    return problems


def _compare_bounds(old: Schema, new: Schema, path: str) -> list[str]:
    problems: list[str] = []
    for key in (*_LOWER_BOUNDS, *_UPPER_BOUNDS):
        if key not in new:
            continue
        if key not in old:
            problems.append(f"{path}: {key} {new[key]} added")
        elif key in _LOWER_BOUNDS and new[key] > old[key]:
            problems.append(f"{path}: {key} raised from {old[key]} to {new[key]}")
        elif key in _UPPER_BOUNDS and new[key] < old[key]:
            problems.append(f"{path}: {key} lowered from {old[key]} to {new[key]}")
    return problems


def _resolve(root: Schema, schema: Schema) -> Schema:
    """Follow local `$ref`s ("#/$defs/Line", "#/components/schemas/Line") to their target.

    Sibling keywords of a `$ref` (allowed since draft 2019-09) are merged over the target.
    """
    hops = 0
    while "$ref" in schema:
        reference = str(schema["$ref"])
        if not reference.startswith("#/"):
            raise ValueError(f"only local $refs are supported, not {reference!r}")
        target: Any = root
        for part in reference[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        hops += 1
        if hops > 100:
            raise ValueError(f"$ref cycle at {reference!r}")
    return schema


def _variants(root: Schema, schema: Schema) -> list[Schema]:
    """The alternatives a schema accepts: its anyOf/oneOf branches (flattened), else itself."""
    branches: Sequence[Schema] | None = schema.get("anyOf") or schema.get("oneOf")
    if not branches:
        return [schema]
    shared = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
    flat: list[Schema] = []
    for branch in branches:
        flat.extend(_variants(root, {**shared, **_resolve(root, branch)}))
    return flat


def _types(schema: Schema) -> set[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return set(declared)
    values = _allowed_values(schema)
    if values is not None:
        return {_JSON_TYPES.get(type(value), "any") for value in values}
    if "properties" in schema or "additionalProperties" in schema:
        return {"object"}
    if "items" in schema:
        return {"array"}
    return {"any"}


def _accepts(new_types: set[str], old_types: set[str]) -> bool:
    if "any" in new_types:
        return True
    widened = new_types | ({"integer"} if "number" in new_types else set())
    return old_types <= widened


def _allowed_values(schema: Schema) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    if "enum" in schema:
        return list(schema["enum"])
    return None


def _show(types: set[str]) -> str:
    return " | ".join(sorted(types))


def _show_values(values: Sequence[Any]) -> str:
    return ", ".join(repr(value) for value in values)
