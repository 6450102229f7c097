"""An in-memory event bus that behaves like the RabbitMQ topology, for tests without a broker.

Fanout per event type, one queue per (service, event type), delay tiers and dead-letter queues:
the same topology as contracts.topology, kept in dicts. Every delivery goes through the real
`infra.messaging.dispatch.Dispatch` (attempt header, codec, event-type check, handler, retry
policy, failure story headers), and the bus only carries its decision out: an ack is recorded,
a retry is delivered again once its delay has passed on the bus's virtual clock (nothing
sleeps), a dead letter lands in the queue's DLQ with its headers. `tests/integration/
test_harness_agrees.py` runs the same test bodies on this bus and on RabbitMQ.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.envelope import Envelope
from contracts.events import Event
from contracts.topology import jittered_delays, queue_name
from infra.messaging import codec
from infra.messaging.dispatch import Dispatch, Handler, Subscription
from infra.messaging.hooks import ConsumeHook, Delivery, Inbound
from infra.messaging.retry_policy import Pick
from infra.settings import AmqpSettings

# Where the virtual clock starts (any fixed, timezone-aware instant).
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
# Deliveries one `drain` makes at most: a handler that always fails with tiers that never end
# would otherwise spin forever.
MAX_DELIVERIES = 10_000


@dataclass(frozen=True)
class Settled:
    """How one delivery ended."""

    queue: str
    message_id: str | None
    event_type: str | None
    attempt: int | None
    outcome: str  # acked, retried, dead_lettered, requeued, rejected
    # What stopped the attempt ("RetryLater: unknown order o-1"), None if nothing did.
    error: str | None = None


@dataclass(frozen=True)
class DeadLettered:
    message: Inbound

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.message.headers)

    @property
    def reason(self) -> str | None:
        return self.message.headers.get("x-dead-letter-reason")


@dataclass(order=True)
class _Due:
    at_ms: int
    sequence: int
    queue: str = field(compare=False)
    message: Inbound = field(compare=False)


class Recorder(ConsumeHook):
    """Records how each delivery ended; a hook, so it works on any transport's dispatch."""

    def __init__(self, settled: list[Settled]) -> None:
        self._settled = settled
        # Keyed by delivery: a handler may cause deliveries of its own before it ends.
        self._errors: dict[int, str] = {}

    @contextmanager
    def delivery(self, delivery: Delivery) -> Iterator[None]:
        try:
            yield
        finally:
            message = delivery.message
            self._settled.append(
                Settled(
                    delivery.queue,
                    message.message_id,
                    message.type,
                    delivery.attempt,
                    delivery.outcome or "unsettled",
                    self._errors.pop(id(delivery), None),
                )
            )

    def failed(self, delivery: Delivery, error: Exception) -> None:
        self._errors[id(delivery)] = f"{type(error).__name__}: {error}"


class _Settlement:
    """Carries one delivery's decision out on the bus."""

    def __init__(self, bus: InMemoryBus, queue: str, message: Inbound) -> None:
        self._bus, self._queue, self._message = bus, queue, message

    async def ack(self) -> None:
        return None

    async def requeue(self) -> None:
        self._bus._enqueue(self._queue, self._message, delay_ms=0)

    async def reject(self) -> None:
        # The queue's own dead-letter exchange takes it, without our story headers.
        self._bus.dead_letters[self._queue].append(DeadLettered(self._message))

    async def retry(self, delay_ms: int, headers: dict[str, Any]) -> None:
        self._bus._enqueue(self._queue, _with_headers(self._message, headers), delay_ms)

    async def dead_letter(self, headers: dict[str, Any]) -> None:
        copy = _with_headers(self._message, headers)
        self._bus.dead_letters[self._queue].append(DeadLettered(copy))


class InMemoryBus:
    """`pick` chooses a retry tier's delay variant (the first, longest, by default: tests
    are deterministic); `hooks` observe every delivery, as the broker's hooks do."""

    def __init__(
        self,
        *,
        pick: Pick | None = None,
        hooks: Sequence[ConsumeHook] = (),
        amqp: AmqpSettings | None = None,
        epoch: datetime = EPOCH,
    ) -> None:
        self._pick = pick or _longest
        self._hooks = tuple(hooks)
        self._amqp = amqp or AmqpSettings()
        self._subscriptions: dict[str, Subscription] = {}
        self._dispatch: dict[str, Dispatch] = {}
        self._by_event: dict[str, list[str]] = defaultdict(list)
        self._due: list[_Due] = []
        self._sequence = itertools.count()
        self.now_ms = 0
        self._epoch = epoch
        self.published: list[Envelope] = []
        self.settled: list[Settled] = []
        self.dead_letters: dict[str, list[DeadLettered]] = defaultdict(list)

    def subscribe(
        self,
        service: str,
        event_type: type[Event],
        handler: Handler,
        retry_delays_ms: Sequence[int] | None = None,
    ) -> str:
        """Declare `service`'s queue for `event_type` and consume it with `handler`."""
        queue = queue_name(service, event_type.event_type)
        if queue in self._subscriptions:
            raise ValueError(f"{queue} has a consumer already")
        delays = self._amqp.retry_delays_ms if retry_delays_ms is None else retry_delays_ms
        tiers = tuple(jittered_delays(d, self._amqp.retry_jitter) for d in delays)
        self._subscriptions[queue] = Subscription(queue, event_type.event_type, handler, tiers)
        hooks = (*self._hooks, Recorder(self.settled))
        self._dispatch[queue] = Dispatch(service, hooks, self._pick)
        self._by_event[event_type.event_type].append(queue)
        return queue

    def publish(self, envelope: Envelope) -> None:
        """Fan `envelope` out to every queue of its event type, encoded as the broker gets it."""
        self.published.append(envelope)
        inbound = codec.inbound_of(envelope)
        for queue in self._by_event[envelope.event_type]:
            self._enqueue(queue, inbound, delay_ms=0)

    def publish_raw(self, queue: str, message: Inbound) -> None:
        """Put any message on one queue, as a hostile or broken producer could."""
        self._enqueue(queue, message, delay_ms=0)

    def clock(self) -> datetime:
        """The bus's virtual time as a clock for the services' deps: a retry delayed by 30 s
        finds the clock 30 s later, so leases, deadlines and retry tiers meet as they would."""
        return self._epoch + timedelta(milliseconds=self.now_ms)

    def advance(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)

    async def drain(self, max_deliveries: int = MAX_DELIVERIES) -> int:
        """Deliver until no message is left, retries included (the virtual clock jumps to
        each retry's due time); the number of deliveries made."""
        made = 0
        while await self.deliver_next() is not None:
            made += 1
            if made >= max_deliveries and self._due:
                raise RuntimeError(f"still delivering after {made} deliveries")
        return made

    async def deliver_next(self) -> Settled | None:
        """Make the next delivery (the clock moves to its due time if it is later); how it
        ended, or None if no message is waiting."""
        if not self._due:
            return None
        due = heapq.heappop(self._due)
        self.now_ms = max(self.now_ms, due.at_ms)
        subscription = self._subscriptions[due.queue]
        settlement = _Settlement(self, due.queue, due.message)
        await self._dispatch[due.queue](subscription, due.message, settlement)
        return self.settled[-1]

    @property
    def waiting(self) -> int:
        """Messages waiting in the queues and the delay tiers."""
        return len(self._due)

    def queues_of(self, event_type: str) -> list[str]:
        """The queues bound to `event_type`'s fanout exchange."""
        return list(self._by_event[event_type])

    def outcomes(self, queue: str | None = None) -> list[str]:
        return [s.outcome for s in self.settled if queue is None or s.queue == queue]

    def _enqueue(self, queue: str, message: Inbound, delay_ms: int) -> None:
        if queue not in self._subscriptions:
            raise KeyError(f"no queue {queue}: nothing subscribes to it")
        due = _Due(self.now_ms + delay_ms, next(self._sequence), queue, message)
        heapq.heappush(self._due, due)


def _with_headers(message: Inbound, headers: dict[str, Any]) -> Inbound:
    return Inbound(
        body=message.body,
        headers=headers,
        message_id=message.message_id,
        type=message.type,
        correlation_id=message.correlation_id,
        exchange=message.exchange,
    )


def _longest(variants: Sequence[int]) -> int:
    return max(variants)
