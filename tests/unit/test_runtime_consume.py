"""Subscribing at start retries what the bus refuses for a moment, never a contract error."""

from __future__ import annotations

from typing import Any, cast

import pytest

from contracts.envelope import Envelope
from contracts.events import Event, OrderPlaced
from infra.messaging.dispatch import Handler
from infra.runtime import Runtime
from infra.settings import RuntimeSettings

pytestmark = pytest.mark.unit


class FlakySubscriber:
    """Refuses the first `refusals` subscriptions the way a broker mid-declaration does."""

    def __init__(self, refusals: int, error: Exception) -> None:
        self.refusals, self.error, self.calls = refusals, error, 0

    async def subscribe(
        self, event_type: type[Event], handler: Handler, retry_delays_ms: list[int] | None = None
    ) -> str:
        self.calls += 1
        if self.calls <= self.refusals:
            raise self.error
        return f"test.{event_type.event_type}"


class Bus:
    def __init__(self, subscriber: FlakySubscriber) -> None:
        self.subscriber = subscriber


def runtime_with(subscriber: FlakySubscriber) -> Runtime:
    settings = RuntimeSettings.from_env("test", default_port=1, default_database="t")
    none = cast(Any, None)
    return Runtime(settings, cast(Any, Bus(subscriber)), none, none)


async def handler(envelope: Envelope, event: OrderPlaced) -> None:
    return None


async def test_a_refused_subscription_is_retried_until_the_bus_takes_it() -> None:
    subscriber = FlakySubscriber(2, ConnectionError("541 internal error"))
    runtime = runtime_with(subscriber)
    await runtime.consume(OrderPlaced, handler)
    assert (subscriber.calls, runtime.queues) == (3, ["test.OrderPlaced"])


async def test_a_subscription_the_contracts_refuse_fails_at_once() -> None:
    subscriber = FlakySubscriber(5, ValueError("test does not subscribe to OrderPlaced"))
    with pytest.raises(ValueError, match="does not subscribe"):
        await runtime_with(subscriber).consume(OrderPlaced, handler)
    assert subscriber.calls == 1
