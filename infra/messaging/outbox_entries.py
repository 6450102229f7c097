"""The outbox entries an aggregate's update writes (infra.messaging.outbox relays them), and
`outbox_at`, the time of the document's latest append, by which the relay's sweep finds it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from contracts.envelope import Envelope
from infra.observability import tracing

Document = dict[str, Any]


def outbox_entry(envelope: Envelope) -> Document:
    entry = envelope.model_dump(mode="json")
    entry["occurred_at"] = envelope.occurred_at  # a BSON date, so it can be queried by time
    # Extra keys beside the envelope's fields; only with a current span.
    tracing.inject(entry)
    return entry


def outbox_fields(envelopes: Iterable[Envelope]) -> Document:
    """Fields of a new document that starts with `envelopes` in its outbox."""
    entries = [outbox_entry(e) for e in envelopes]
    if not entries:
        return {"outbox": []}
    return {"outbox": entries, "outbox_at": datetime.now(UTC)}


def outbox_append(envelopes: Iterable[Envelope]) -> Document:
    """Update operators that append `envelopes`; merge them into the state change's update."""
    entries = [outbox_entry(e) for e in envelopes]
    if not entries:
        return {}
    # $max: two writers racing never move the document's append time back.
    return {"$push": {"outbox": {"$each": entries}}, "$max": {"outbox_at": datetime.now(UTC)}}


def merge_updates(*updates: Document) -> Document:
    """Merge MongoDB update documents operator by operator ($set with $set, ...)."""
    merged: Document = {}
    for update in updates:
        for operator, fields in update.items():
            merged.setdefault(operator, {}).update(fields)
    return merged
