"""What a dead letter says about itself, whichever way it was read (management API or AMQP).

The consumer (infra/messaging/story.py) writes the story of a failure into headers; the
broker's own dead-lettering (delivery limit) writes only `x-death`. Everything here falls back
from the first to the second, then to the message properties and the JSON body.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from infra.dlq.management import Peeked
from infra.messaging import story

DLQ_SUFFIX = ".dlq"
_RETRY_TIER = re.compile(r"^(?P<queue>.+)\.retry\.\d+ms$")
# Filter keys that are not header names.
SHORTCUTS = ("event_type", "event_id", "reason", "exception", "queue")


@dataclass(frozen=True)
class Filter:
    key: str
    value: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


@dataclass(frozen=True)
class Letter:
    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    type: str | None
    truncated: bool = False  # the management API cut the body (display only)

    @classmethod
    def from_peeked(cls, peeked: Peeked) -> Letter:
        props = peeked.properties
        return cls(
            body=peeked.body,
            headers=dict(props.get("headers") or {}),
            message_id=props.get("message_id"),
            type=props.get("type"),
            truncated=peeked.truncated,
        )

    @classmethod
    def from_amqp(cls, message: AbstractIncomingMessage) -> Letter:
        return cls(
            body=message.body,
            headers=dict(message.headers or {}),
            message_id=message.message_id,
            type=message.type,
        )

    @cached_property
    def envelope(self) -> dict[str, Any]:
        """The JSON body if it is an object, else {} (the poison may be anything)."""
        try:
            value = json.loads(self.body)
        except (UnicodeDecodeError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    @cached_property
    def death(self) -> dict[str, Any]:
        """The newest `x-death` entry (the broker puts it first), or {}."""
        deaths = self.headers.get("x-death")
        if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
            return deaths[0]
        return {}

    @property
    def event_type(self) -> str:
        return self._told("x-event-type", self.type, "event_type")

    @property
    def event_id(self) -> str:
        return self._told("x-event-id", self.message_id, "event_id")

    def _told(self, header: str, message_property: str | None, envelope_field: str) -> str:
        """From the header, else the message property, else the event's envelope."""
        return (
            _text(self.headers.get(header))
            or message_property
            or _text(self.envelope.get(envelope_field))
        )

    @property
    def exception(self) -> str:
        kind = _text(self.headers.get("x-exception-class"))
        message = _text(self.headers.get("x-exception-message"))
        return f"{kind}: {message}" if kind and message else kind or message

    @property
    def dead_letter_reason(self) -> str:
        """The consumer's reason, or the broker's (`delivery_limit`, `rejected`, ...)."""
        why = _text(self.headers.get("x-dead-letter-reason"))
        if why:
            return why
        broker_reason = _text(self.death.get("reason"))
        return f"broker: {broker_reason}" if broker_reason else ""

    @property
    def reason(self) -> str:
        parts = [part for part in (self.dead_letter_reason, self.exception) if part]
        return " - ".join(parts) or "unknown"

    @property
    def attempts(self) -> int | None:
        return _int(self.headers.get("x-attempts"))

    @property
    def replay_count(self) -> int:
        return _int(self.headers.get("x-replay-count")) or 0

    @property
    def failed_at(self) -> datetime | None:
        for value in (
            self.headers.get("x-last-failure-at"),
            self.headers.get("x-first-failure-at"),
            self.death.get("time"),
        ):
            moment = _moment(value)
            if moment is not None:
                return moment
        return None

    def age(self, now: datetime) -> timedelta | None:
        failed_at = self.failed_at
        return None if failed_at is None else now - failed_at

    @property
    def original_queue(self) -> str:
        queue = _text(self.headers.get("x-original-queue")) or _text(self.death.get("queue"))
        tier = _RETRY_TIER.match(queue)
        # A message can die in a delay tier's dead-lettering; its home is the work queue.
        return tier.group("queue") if tier else queue

    def target(self, source: str) -> str | None:
        """Where a replay sends this letter by default; None when nothing tells."""
        if self.original_queue:
            return self.original_queue
        if source.endswith(DLQ_SUFFIX):
            return source.removesuffix(DLQ_SUFFIX)
        return None

    def matches(self, filters: list[Filter]) -> bool:
        return all(self._matches(one) for one in filters)

    def _matches(self, one: Filter) -> bool:
        if one.key in SHORTCUTS:
            shortcut = {
                "event_type": self.event_type,
                "event_id": self.event_id,
                "reason": self.reason,
                "exception": self.exception,
                "queue": self.original_queue,
            }
            actual = shortcut[one.key]
        elif one.key in self.headers:
            actual = _text(self.headers[one.key])
        else:
            return False
        return one.value.casefold() in actual.casefold()

    def replay_headers(self, source: str, now: datetime) -> dict[str, Any]:
        return story.for_replay(self.headers, source, self.replay_count + 1, now)

    def summary(self, source: str, now: datetime) -> dict[str, Any]:
        """Everything `show --json` prints for one letter."""
        age = self.age(now)
        failed_at = self.failed_at
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "reason": self.reason,
            "dead_letter_reason": self.dead_letter_reason,
            "exception": self.exception,
            "attempts": self.attempts,
            "failed_at": failed_at.isoformat() if failed_at else None,
            "age_seconds": round(age.total_seconds(), 3) if age is not None else None,
            "original_queue": self.original_queue,
            "replay_target": self.target(source),
            "replay_count": self.replay_count,
            "headers": self.headers,
            "body": self.envelope or self.body.decode(errors="replace"),
            "body_truncated": self.truncated,
        }


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _moment(value: Any) -> datetime | None:
    """Headers carry times as ISO strings (the consumer), AMQP timestamps (aio-pika gives a
    datetime) or epoch seconds (the management API's rendering of those timestamps)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str | bytes):
        try:
            moment = datetime.fromisoformat(_text(value))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None
