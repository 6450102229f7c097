"""The seam between the runtime and the event bus that carries its events.

A service process holds one `Transport`: a `Publisher` the outbox relay hands envelopes to
(returning only once the bus has durably taken them) and a `Subscriber` that consumes the
service's queues. Everything above this seam (handlers, the outbox, dispatch and the retry
policy, hooks) is the same on every bus; what differs is how a bus stores, delivers, delays
and dead-letters. RabbitMQ is the default and the reference (`infra.messaging.broker` and
`infra.messaging.consumer`); `EVENT_BUS` selects another (infra.settings.EventBusSettings).

Each bus keeps the same promises: a publish is confirmed before the outbox marks it sent; a
delivery is acked only after its handler's effect is stored; a crashed consumer's delivery is
delivered again; retries wait through the same delay tiers with jitter; a dead letter keeps its
story (infra.messaging.story); tests/integration/test_harness_agrees.py holds every bus to the
same behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from contracts.envelope import Envelope
from contracts.events import Event
from infra.messaging.dispatch import Handler


class Publisher(Protocol):
    @property
    def is_connected(self) -> bool:
        """False while the bus is known to be unreachable (the relay pauses)."""
        ...

    async def publish(self, envelope: Envelope, headers: dict[str, Any] | None = None) -> None:
        """Return once the bus has durably taken the event; raise PublishFailed otherwise."""
        ...


class Subscriber(Protocol):
    async def subscribe(
        self, event_type: type[Event], handler: Handler, retry_delays_ms: list[int] | None = None
    ) -> str:
        """Declare this service's queue for `event_type` and consume it; its name."""
        ...

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop taking deliveries, then let the ones in hand finish (bounded)."""
        ...


class Transport(Protocol):
    @property
    def publisher(self) -> Publisher: ...

    @property
    def subscriber(self) -> Subscriber: ...

    async def connect(self) -> None:
        """Connect (and declare what publishing needs); raise to be retried at start."""
        ...

    async def close(self) -> None: ...


class ConnectingPublisher(Publisher, Protocol):
    """A publisher that holds the bus's one connection (RabbitMQ's Broker, JetStreamBus)."""

    async def connect(self) -> None: ...

    async def close(self) -> None: ...


PublisherT = TypeVar("PublisherT", bound=ConnectingPublisher)
SubscriberT = TypeVar("SubscriberT", bound=Subscriber)


@dataclass(frozen=True)
class OneConnectionTransport(Generic[PublisherT, SubscriberT]):
    """The Transport of a bus whose publisher holds the connection its subscriber consumes
    through: connecting and closing the publisher connects and closes the bus."""

    publisher: PublisherT
    subscriber: SubscriberT

    async def connect(self) -> None:
        await self.publisher.connect()

    async def close(self) -> None:
        await self.publisher.close()
