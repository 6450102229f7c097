"""Old event versions, read as the current one: the upcaster registry.

EVENT_SCHEMAS holds only the current version of each event type. When a change to an event is
breaking, its `schema_version` is bumped and an upcaster from the old version is registered
here, so a consumer can still read the old messages that remain in queues, retry tiers, DLQs and
outboxes: the codec upcasts the payload step by step (v1 -> v2 -> ... -> current) and validates
the result against the current schema.

An upcaster is a pure function from the payload of version N (a JSON dict, not yet validated:
it may be anything the old producer wrote) to the payload of version N+1. It receives its own
deep copy, so it may modify and return it. Register one with:

    @upcaster("OrderPlaced", from_version=1)
    def _order_placed_v1_to_v2(payload: Payload) -> Payload:
        payload["channel"] = "web"  # v2 made `channel` required; v1 orders all came from the web
        return payload
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from contracts.events import EVENT_SCHEMAS, Event

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class UnknownSchemaVersion(LookupError):
    """No current schema for the type, or no upcaster path from the version to it."""


class UpcastFailed(ValueError):
    """An upcaster could not convert the payload (the old payload was malformed)."""


# (event_type, from_version) -> upcaster to from_version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the decorated function as the upcaster of `event_type` from `from_version`."""

    def register(function: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        # Two upcasters for one step would make the result depend on import order.
        if key in UPCASTERS:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")
        UPCASTERS[key] = function
        return function

    return register


def current_version(
    event_type: str, schemas: Mapping[tuple[str, int], type[Event]] = EVENT_SCHEMAS
) -> int | None:
    """The version of `event_type` in the schema registry, None for an unknown type."""
    versions = [version for (name, version) in schemas if name == event_type]
    return max(versions) if versions else None


def upcast_path(
    event_type: str,
    version: int,
    *,
    schemas: Mapping[tuple[str, int], type[Event]] = EVENT_SCHEMAS,
    upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS,
) -> list[Upcaster]:
    """The upcasters taking `event_type` from `version` to its current version, in order (empty
    for the current version). Raise UnknownSchemaVersion when there is no such path."""
    current = current_version(event_type, schemas)
    if current is None:
        raise UnknownSchemaVersion(f"unknown event type or version: {event_type} v{version}")
    if version > current:
        # A newer producer than this consumer: deploy consumers first (see the README).
        raise UnknownSchemaVersion(
            f"unknown event type or version: {event_type} v{version} (current is v{current})"
        )
    path = []
    for step in range(version, current):
        function = upcasters.get((event_type, step))
        if function is None:
            raise UnknownSchemaVersion(
                f"unknown event type or version: {event_type} v{version}"
                f" (no upcaster from v{step} to v{step + 1})"
            )
        path.append(function)
    return path


def upcast(
    event_type: str,
    version: int,
    payload: Payload,
    *,
    schemas: Mapping[tuple[str, int], type[Event]] = EVENT_SCHEMAS,
    upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS,
) -> tuple[int, Payload]:
    """Bring a payload of `event_type` at `version` to the current version.

    Returns (current version, payload); the payload is not validated here (the caller validates
    it against the current schema). The caller's dict is never modified.
    """
    path = upcast_path(event_type, version, schemas=schemas, upcasters=upcasters)
    if not path:
        return version, payload
    result = copy.deepcopy(payload)
    for step, function in enumerate(path, start=version):
        try:
            result = function(result)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            # An old payload is unvalidated input: a malformed one is a bad message, not a bug
            # to retry, so it surfaces as a permanent decoding failure.
            raise UpcastFailed(
                f"cannot upcast {event_type} v{step} to v{step + 1}: {type(error).__name__}: "
                f"{error}"
            ) from error
        if not isinstance(result, dict):
            raise UpcastFailed(f"upcaster of {event_type} v{step} returned {type(result).__name__}")
    return version + len(path), result


# Registered upcasters go below, one per breaking change, next to the reason for it. None yet:
# every event is still at its first version.
