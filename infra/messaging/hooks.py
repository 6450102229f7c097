"""Hooks around consuming and publishing a message (FastStream's middleware idea): tracing,
metrics and log context observe deliveries and publishes here instead of living inside the
consumer and the broker. The messages they see are transport-neutral.

A hook's methods do nothing unless overridden; infra.observability.message_hooks builds the
default list. Hooks observe: they never decide a delivery's fate.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Inbound:
    """A received message, whatever carried it."""

    body: bytes
    headers: Mapping[str, Any]
    message_id: str | None = None
    type: str | None = None  # the sender's word: checked against the body before use
    correlation_id: str | None = None
    exchange: str = ""  # where it was published, if the transport says


@dataclass
class Delivery:
    """One delivery of `message` on `queue`; dispatch fills in the rest as it learns it."""

    queue: str
    message: Inbound
    attempt: int | None = None  # once its header is read and valid
    causation_id: str | None = None  # once the body is decoded
    outcome: str | None = None  # acked, retried, dead_lettered, requeued, rejected


@dataclass
class Outgoing:
    """A message about to be published. Hooks may add to `headers` (a trace context)."""

    exchange: str
    routing_key: str
    event_type: str
    message_id: str | None
    correlation_id: str | None
    headers: dict[str, Any] = field(default_factory=dict)


class ConsumeHook:
    def delivery(self, delivery: Delivery) -> AbstractContextManager[None]:
        """Around the whole delivery, whatever its end; `delivery.outcome` is set on a
        normal exit."""
        return nullcontext()

    def attempt(self, delivery: Delivery) -> AbstractContextManager[None]:
        """Around one attempt once its number is known: the handler, and the retry or
        dead-letter publish that follows a failure."""
        return nullcontext()

    def decoded(self, delivery: Delivery) -> None:
        """The body was decoded and is of the queue's event type."""

    def failed(self, delivery: Delivery, error: Exception) -> None:
        """Decoding or the handler failed; the retry policy decides what follows."""


class PublishHook:
    def publish(self, outgoing: Outgoing) -> AbstractContextManager[None]:
        """Around one publish until the broker confirmed it (or it raised)."""
        return nullcontext()


@dataclass(frozen=True)
class Hooks:
    consume: tuple[ConsumeHook, ...] = ()
    publish: tuple[PublishHook, ...] = ()


@contextmanager
def entered(scopes: Iterable[AbstractContextManager[None]]) -> Iterator[None]:
    """Enter `scopes` in order (the first one outermost); leave them in reverse."""
    with ExitStack() as stack:
        for scope in scopes:
            stack.enter_context(scope)
        yield


@contextmanager
def publishing(
    hooks: Iterable[PublishHook],
    exchange: str,
    routing_key: str,
    event_type: str,
    message_id: str | None,
    correlation_id: str | None,
    headers: Mapping[str, Any] | None,
) -> Iterator[Outgoing]:
    """The publish hooks around one publish, whatever the bus: yields the message as they see
    it, whose `headers` (a trace context added) are the ones to send."""
    outgoing = Outgoing(
        exchange, routing_key, event_type, message_id, correlation_id, dict(headers or {})
    )
    with entered(hook.publish(outgoing) for hook in hooks):
        yield outgoing
