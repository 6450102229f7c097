"""The failure story a message carries in its headers, written at each failure and wiped by a
replay; readable in the management UI and by the DLQ tool (infra/dlq/letters.py).

Pure functions of header mappings: every transport writes the same story.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from infra.messaging.headers import ATTEMPT_HEADER

# Rewritten at every failure.
FAILURE_HEADERS = frozenset(
    {
        "x-exception-class",
        "x-exception-message",
        "x-traceback",
        "x-service",
        "x-original-queue",
        "x-last-failure-at",
        "x-event-id",
        "x-event-type",
    }
)
# Set at the first failure only, so they keep telling the message's whole history; a replay
# keeps them too.
HISTORY_HEADERS = frozenset({"x-original-exchange", "x-first-failure-at"})
# The consumer's retry bookkeeping (ATTEMPT_HEADER drives the delay ladder) and the broker's
# own (x-death, x-delivery-count, x-first-death-*, x-last-death-*).
RETRY_HEADERS = frozenset(
    {ATTEMPT_HEADER, "x-attempts", "x-dead-letter-reason", "x-death", "x-delivery-count"}
)
RETRY_PREFIXES = ("x-first-death-", "x-last-death-")
# What a replay drops, so the message starts over with a full set of attempts.
REPLAY_STRIPPED = FAILURE_HEADERS | RETRY_HEADERS


def failure_story(
    headers: Mapping[str, Any] | None,
    error: BaseException,
    *,
    service: str,
    queue: str,
    event_id: str | None,
    event_type: str | None,
    exchange: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """`headers` plus the story of this failure of the message (`event_id`, `event_type`,
    published to `exchange`) in `service`'s `queue`."""
    moment = (now or datetime.now(UTC)).isoformat()
    story = dict(headers or {})
    short_trace = "".join(traceback.format_exception(error, limit=4))[-2000:]
    story.update(
        {
            "x-exception-class": type(error).__name__,
            "x-exception-message": str(error)[:1000],
            "x-traceback": short_trace,
            "x-service": service,
            "x-original-queue": queue,
            "x-last-failure-at": moment,
            "x-event-id": event_id or "",
            "x-event-type": event_type or "",
        }
    )
    story.setdefault("x-original-exchange", exchange or "")
    story.setdefault("x-first-failure-at", moment)
    return story


def for_retry(story: dict[str, Any], attempt: int) -> dict[str, Any]:
    """The story of a copy sent to a delay tier after failed attempt number `attempt`."""
    return {**story, ATTEMPT_HEADER: attempt + 1}


def for_dead_letter(story: dict[str, Any], attempt: int, reason: str) -> dict[str, Any]:
    """The story of a copy sent to the dead-letter queue after `attempt` attempts."""
    return {**story, "x-dead-letter-reason": reason, "x-attempts": attempt}


def for_replay(
    headers: Mapping[str, Any], source: str, replay_count: int, now: datetime
) -> dict[str, Any]:
    """The headers of a dead letter replayed from `source` (its `replay_count`-th replay):
    the retry bookkeeping and the last failure go, its history and application headers stay
    (the consumer writes the failure again if it fails again)."""
    kept = {
        key: value
        for key, value in headers.items()
        if key not in REPLAY_STRIPPED and not key.startswith(RETRY_PREFIXES)
    }
    kept["x-replay-count"] = replay_count
    kept["x-replayed-at"] = now.isoformat()
    kept["x-replayed-from"] = source
    return kept
