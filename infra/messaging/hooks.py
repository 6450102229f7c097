"""Hooks around consuming and publishing a message (FastStream's middleware idea): tracing,
metrics and log context observe deliveries and publishes here instead of living inside the
consumer and the broker. The messages they see are transport-neutral.

A hook's methods do nothing unless overridden; infra.observability.message_hooks builds the
default list. Hooks observe: they never decide a delivery's fate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from types import TracebackType
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

    def log_ids(self) -> dict[str, Any]:
        """The ids a log line written while it is handled carries (read only then)."""
        message = self.message
        ids: dict[str, Any] = {
            "queue": self.queue,
            "event_id": message.message_id,
            "event_type": message.type,
            "correlation_id": message.correlation_id,
            "attempt": self.attempt,
        }
        if self.causation_id is not None:
            ids["causation_id"] = self.causation_id
        return ids


@dataclass
class Outgoing:
    """A message about to be published. Hooks may add to `headers` (a trace context)."""

    exchange: str
    routing_key: str
    event_type: str
    message_id: str | None
    correlation_id: str | None
    headers: dict[str, Any] = field(default_factory=dict)


# What a hook with nothing to do around a message returns (nullcontext holds no state).
NO_SCOPE: AbstractContextManager[None] = nullcontext()


class ConsumeHook:
    def delivery(self, delivery: Delivery) -> AbstractContextManager[None]:
        """Around the whole delivery, whatever its end; `delivery.outcome` is set on a
        normal exit."""
        return NO_SCOPE

    def attempt(self, delivery: Delivery) -> AbstractContextManager[None]:
        """Around one attempt once its number is known: the handler, and the retry or
        dead-letter publish that follows a failure."""
        return NO_SCOPE

    def decoded(self, delivery: Delivery) -> None:
        """The body was decoded and is of the queue's event type."""

    def failed(self, delivery: Delivery, error: Exception) -> None:
        """Decoding or the handler failed; the retry policy decides what follows."""


class PublishHook:
    def publish(self, outgoing: Outgoing) -> AbstractContextManager[None]:
        """Around one publish until the broker confirmed it (or it raised)."""
        return NO_SCOPE


@dataclass(frozen=True)
class Hooks:
    consume: tuple[ConsumeHook, ...] = ()
    publish: tuple[PublishHook, ...] = ()


def overriding(hooks: Iterable[ConsumeHook], method: str) -> tuple[ConsumeHook, ...]:
    """The hooks whose `method` does something (overrides ConsumeHook's): the others need
    not be called for every delivery."""
    default = getattr(ConsumeHook, method)
    return tuple(hook for hook in hooks if getattr(type(hook), method) is not default)


# The scopes of some hooks around a delivery (or an attempt), entered as one.
Scopes = Callable[[Delivery], AbstractContextManager[None]]


def _no_scope(delivery: Delivery) -> AbstractContextManager[None]:
    return NO_SCOPE


def scopes(hooks: Iterable[ConsumeHook], method: str) -> Scopes:
    """One function giving the scopes of `hooks`' `method` ("delivery" or "attempt")
    around a delivery, entered in the hooks' order; composed once, not at each delivery."""
    methods: list[Scopes] = [getattr(hook, method) for hook in overriding(hooks, method)]
    if not methods:
        return _no_scope
    if len(methods) == 1:
        return methods[0]
    return lambda delivery: entered([scope(delivery) for scope in methods])


class entered:
    """Enter `scopes` in order (the first one outermost); leave them in reverse, each seeing
    the exception the inner ones let through, as nested `with` statements would, except that
    no scope can swallow it: hooks observe, they never decide a message's fate.

    A small class rather than contextlib's ExitStack: it runs around every message published
    and every delivery, where ExitStack's bookkeeping cost more than the hooks themselves."""

    __slots__ = ("_open", "_scopes")

    def __init__(self, scopes: Iterable[AbstractContextManager[None]]) -> None:
        self._scopes = scopes
        self._open: list[AbstractContextManager[None]] = []

    def __enter__(self) -> None:
        try:
            for scope in self._scopes:
                if scope is not NO_SCOPE:  # nothing to enter or leave
                    scope.__enter__()
                    self._open.append(scope)
        except BaseException as error:
            # The scopes entered so far are left as if their body had raised it.
            self.__exit__(type(error), error, error.__traceback__)
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pending = exc
        while self._open:
            scope = self._open.pop()
            try:
                if pending is None:
                    scope.__exit__(None, None, None)
                else:
                    scope.__exit__(type(pending), pending, pending.__traceback__)
            except BaseException as raised:
                if raised is not pending and raised.__context__ is None:
                    raised.__context__ = pending
                pending = raised
        if pending is not exc and pending is not None:
            raise pending  # a scope's exit raised: that exception goes on instead


class publishing:
    """The publish hooks around one publish, whatever the bus: `with publishing(...) as
    outgoing` gives the message as they see it, whose `headers` (a trace context added) are
    the ones to send."""

    __slots__ = ("_hooks", "_scopes", "outgoing")

    def __init__(
        self,
        hooks: Iterable[PublishHook],
        exchange: str,
        routing_key: str,
        event_type: str,
        message_id: str | None,
        correlation_id: str | None,
        headers: Mapping[str, Any] | None,
    ) -> None:
        self._hooks = hooks
        self.outgoing = Outgoing(
            exchange, routing_key, event_type, message_id, correlation_id, dict(headers or {})
        )
        self._scopes: entered | None = None

    def __enter__(self) -> Outgoing:
        outgoing = self.outgoing
        self._scopes = entered([hook.publish(outgoing) for hook in self._hooks])
        self._scopes.__enter__()
        return outgoing

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._scopes is not None
        self._scopes.__exit__(exc_type, exc, traceback)
