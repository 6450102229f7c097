"""Stream, subject and consumer names on JetStream, from the RabbitMQ topology's own names
(contracts.topology), so the DLQ tool, metrics and logs speak one language on every bus.

- `EVENTS` stream, subjects `events.>`: an event is published to `events.<kebab type>`, the
  name of its RabbitMQ exchange (`events.order-placed`).
- `RETRIES` stream (work-queue retention), subjects `retries.>`: a retry copy for one queue
  goes to `retries.<queue>` (`retries.inventory.order-placed`), seen by that queue only.
- `DLQ_<queue>` stream per queue, subject `<queue>.dlq` (`inventory.order-placed.dlq`).
- Per queue two durable pull consumers: `<queue>` on its event's subject and `<queue>_retry`
  on its retry subject, with `.` written `_` (consumer names cannot hold a dot).

A `prefix` (NATS_PREFIX) goes before every stream (`<prefix>_EVENTS`) and subject
(`<prefix>.events.order-placed`), so pipelines sharing one server never overlap. Services are
never called `events` or `retries`: their DLQ subjects would overlap those streams'.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.topology import dead_letter_queue_name, exchange_name

DLQ_STREAM_PREFIX = "DLQ_"
RETRY_CONSUMER_SUFFIX = "_retry"


@dataclass(frozen=True)
class Names:
    prefix: str = ""

    def _stream(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name

    def _subject(self, subject: str) -> str:
        return f"{self.prefix}.{subject}" if self.prefix else subject

    @property
    def events_stream(self) -> str:
        return self._stream("EVENTS")

    @property
    def events_subjects(self) -> str:
        return self._subject("events.>")

    def event_subject(self, event_type: str) -> str:
        return self._subject(exchange_name(event_type))

    @property
    def retries_stream(self) -> str:
        return self._stream("RETRIES")

    @property
    def retries_subjects(self) -> str:
        return self._subject("retries.>")

    def retry_subject(self, queue: str) -> str:
        return self._subject(f"retries.{queue}")

    def dead_letter_stream(self, queue: str) -> str:
        return self._stream(DLQ_STREAM_PREFIX + consumer_name(queue))

    def dead_letter_subject(self, queue: str) -> str:
        return self._subject(dead_letter_queue_name(queue))

    def unprefixed(self, subject: str) -> str:
        """`<prefix>.events.order-placed` -> `events.order-placed`."""
        return subject.removeprefix(f"{self.prefix}.") if self.prefix else subject

    def queue_of_dead_letter_stream(self, stream: str) -> str | None:
        """`DLQ_inventory_order-placed` -> `inventory.order-placed`; None for other streams.
        (Service names hold no `_`, so the first one is the queue's dot.)"""
        bare = self._stream(DLQ_STREAM_PREFIX)
        if not stream.startswith(bare):
            return None
        return stream.removeprefix(bare).replace("_", ".", 1)


def consumer_name(queue: str) -> str:
    """A work queue's durable consumer: `inventory.order-placed` -> `inventory_order-placed`."""
    return queue.replace(".", "_")


def retry_consumer_name(queue: str) -> str:
    return consumer_name(queue) + RETRY_CONSUMER_SUFFIX
