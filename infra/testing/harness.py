"""Run a service's real handler registry on an in-memory bus, with the deps a test hands it.

    bus = InMemoryBus()
    orders = FakeOrderRepository(outbox=InMemoryOutbox(bus, ORDER))
    order = ServiceHarness(order_service.main.SERVICE, OrderDeps(orders=orders, ...), bus)
    await order.receive(StockReserved(...))
    assert bus.outcomes() == ["acked"]

The declaration is checked as the kit checks it at start (registry against the contracts,
each handler's dependencies against the deps given). Several harnesses on one bus form an
in-memory pipeline: what one service's fakes publish through their InMemoryOutbox is delivered
to every other service subscribed to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from contracts.envelope import Envelope
from contracts.events import Event
from infra.kit import ServiceDefinition, bind_handlers, check_registry
from infra.testing.bus import InMemoryBus


class InMemoryOutbox:
    """What a fake store calls with the events an aggregate recorded, once the state they
    belong to is stored: they are wrapped as the real stores wrap them and published."""

    def __init__(self, bus: InMemoryBus, producer: str) -> None:
        self._bus = bus
        self._producer = producer

    def __call__(self, events: Iterable[Event], causation_id: str | None = None) -> None:
        for event in events:
            envelope = Envelope.wrap(event, producer=self._producer, causation_id=causation_id)
            self._bus.publish(envelope)


class ServiceHarness:
    def __init__(
        self,
        service: ServiceDefinition[Any, Any],
        deps: object,
        bus: InMemoryBus | None = None,
        *,
        retry_delays_ms: Sequence[int] | None = None,
    ) -> None:
        available = {name for name in dir(deps) if not name.startswith("_")}
        check_registry(service.name, service.handlers, available, type(deps).__name__)
        self.service = service.name
        self.bus = bus or InMemoryBus()
        self.queues = [
            self.bus.subscribe(service.name, event_type, handler, retry_delays_ms)
            for event_type, handler in bind_handlers(service.handlers, deps).items()
        ]

    async def receive(
        self,
        event: Event,
        *,
        producer: str = "test",
        cause: Envelope | None = None,
        occurred_at: datetime | None = None,
    ) -> Envelope:
        """Publish `event` as `producer` would (`occurred_at`: when it happened, now if not
        given) and deliver everything that follows from it (retries and the events it causes)
        until the bus is idle."""
        causation_id = str(cause.event_id) if cause is not None else None
        envelope = Envelope.wrap(
            event, producer=producer, causation_id=causation_id, occurred_at=occurred_at
        )
        self.bus.publish(envelope)
        await self.bus.drain()
        return envelope

    async def redeliver(self, envelope: Envelope) -> None:
        """Deliver `envelope` again, as a broker does after a lost ack or a publish repeated
        after a lost confirm, and everything that follows, until the bus is idle."""
        self.bus.publish(envelope)
        await self.bus.drain()

    def outcomes(self) -> list[str]:
        return [s.outcome for s in self.bus.settled if s.queue in self.queues]
