"""What the chaos harness reads and writes on the bus itself, whichever it is: how many
messages wait in each queue, what the dead letters say, and poison sent to every work queue.
`RabbitProbe` reads a vhost (exact depths by passive declares: the management API's figures
lag by seconds); tests/chaos/nats_bus.py's `NatsProbe` reads JetStream and
tests/chaos/redis_bus.py's `RedisProbe` the streams, groups and schedules of Redis."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aio_pika

from contracts.topology import SUBSCRIPTIONS, queue_name
from infra.devstack import Management
from infra.dlq.letters import Letter as DlqLetter


@dataclass(frozen=True)
class Letter:
    """One dead letter: its message id, event type and (application) headers."""

    message_id: str | None
    type: str | None
    headers: dict[str, Any]

    def explained(self) -> str:
        """Why and from where it was dead-lettered, on one line: the consumer's reason or, for
        the broker's own dead-lettering (a quorum queue's delivery limit), its `x-death`
        entries; read by the DLQ tool's rules (infra.dlq.letters)."""
        told = DlqLetter(b"", self.headers, self.message_id, self.type)
        deaths = self.headers.get("x-death")
        broker_said = "; ".join(
            f"{death.get('reason')} in {death.get('queue')} x{death.get('count')}"
            for death in (deaths if isinstance(deaths, list) else [])
            if isinstance(death, dict)
        )
        home = told.original_queue or "?"
        return (
            f"{told.event_type} {told.event_id} from {home}: {told.reason[:300]}"
            f" (attempts={told.attempts} delivery-count={self.headers.get('x-delivery-count')}"
            f" x-death=[{broker_said}] first-failure={self.headers.get('x-first-failure-at')}"
            f" last-failure={self.headers.get('x-last-failure-at')})"
        )


class BusProbe(Protocol):
    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting per queue (dead-letter queues' names end with `.dlq`)."""
        ...

    async def letters(self, dlq: str, limit: int) -> list[Letter]:
        """Up to `limit` dead letters of `dlq` (`<queue>.dlq`), left where they are."""
        ...

    async def publish_to_every_work_queue(self, messages: dict[str, bytes]) -> None:
        """Each body (by message id) into every work queue, as a foreign publisher would."""
        ...


class BusServer(Protocol):
    """A bus server of the test's own (NATS, Redis), which the pipeline runs on (no vhost)."""

    @property
    def url(self) -> str: ...

    def env(self) -> dict[str, str]:
        """The services' environment that puts them on this server."""
        ...

    def probe(self) -> BusProbe: ...

    async def restart(self, outage_s: float) -> None:
        """Stop the server, wait `outage_s`, start it again on its port and data; wait until
        it answers."""
        ...


def work_queue_events() -> list[tuple[str, str]]:
    """Every work queue with the event type it consumes."""
    return [
        (queue_name(service, event.event_type), event.event_type)
        for service, events in SUBSCRIPTIONS.items()
        for event in events
    ]


def work_queues() -> list[str]:
    return [queue for queue, _ in work_queue_events()]


@dataclass
class RabbitProbe:
    """The chaos run's vhost; `vhost_url` picks a node that accepts connections."""

    vhost: str
    management: Management
    vhost_url: Callable[[], str]

    async def queue_depths(self) -> dict[str, int]:
        names = [
            q["name"]
            for q in self.management.request("GET", f"/queues/{quote(self.vhost, safe='')}").json()
        ]
        connection = await aio_pika.connect(self.vhost_url())
        async with connection:
            channel = await connection.channel()
            depths = {}
            for name in names:
                queue = await channel.declare_queue(name, passive=True)
                depths[name] = queue.declaration_result.message_count or 0
            return depths

    async def letters(self, dlq: str, limit: int) -> list[Letter]:
        letters: list[Letter] = []
        connection = await aio_pika.connect(self.vhost_url())
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(dlq)
            for _ in range(limit):
                message = await queue.get(fail=False)  # left unacked: back on close
                if message is None:
                    break
                letters.append(Letter(message.message_id, message.type, dict(message.headers)))
        return letters

    async def publish_to_every_work_queue(self, messages: dict[str, bytes]) -> None:
        connection = await aio_pika.connect(self.vhost_url())
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            for queue in work_queues():
                for message_id, body in messages.items():
                    message = aio_pika.Message(
                        body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                    )
                    await channel.default_exchange.publish(message, queue)
