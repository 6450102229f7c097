"""Failure kinds a handler can signal; the consumer turns each into an ack policy."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class PermanentFailure(Exception):
    """Retrying cannot help (bad data, a broken invariant): dead-letter at once."""


class RetryLater(Exception):
    """Not yet possible (an event arrived before the one it depends on): retry after a delay.

    Any other exception is treated the same way; this one just says so explicitly.
    """


class InvalidMessage(PermanentFailure):
    """The message cannot be decoded or validated against a known schema."""


class PublishFailed(Exception):
    """The broker did not take a message: it was returned as unroutable, nacked, or the
    connection failed before the confirm arrived. The message may or may not be queued.

    `kind` says which: "returned", "nacked" or "connection" (the publish-failure metric's
    reason label)."""

    def __init__(self, reason: str, event_type: str = "", kind: str = "connection") -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_type = event_type
        self.kind = kind


def connected(value: T | None, owner: str) -> T:
    """`value`, which `<owner>.connect()` sets; a RuntimeError before that."""
    if value is None:
        raise RuntimeError(f"{owner}.connect() was not called")
    return value
