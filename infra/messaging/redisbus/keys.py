"""The keys of the Redis Streams bus, from the topology's names (contracts.topology).

Every name an operator sees is the RabbitMQ one: the stream of an event type is named like its
fanout exchange, a consumer group like the queue it stands for, and a queue's dead letters are
`<queue>.dlq`. `namespace` goes before every key, so pipelines can share a server.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.topology import dead_letter_queue_name, exchange_name


@dataclass(frozen=True)
class Keys:
    namespace: str = ""

    def events(self, event_type: str) -> str:
        """The stream every event of `event_type` is added to (the fanout)."""
        return f"{self.namespace}{exchange_name(event_type)}"

    def retries(self, queue: str) -> str:
        """Where `queue`'s retries come back when due: read by `queue`'s group only."""
        return f"{self.namespace}{queue}.retry"

    def parked(self, queue: str) -> str:
        """The retry copies of `queue` waiting for their delay to end."""
        return f"{self.namespace}{queue}.retry.parked"

    def schedule(self, queue: str) -> str:
        """Sorted set: parked entry id -> due time (ms, the server's clock)."""
        return f"{self.namespace}{queue}.retry.due"

    def dead_letters(self, queue: str) -> str:
        return f"{self.namespace}{dead_letter_queue_name(queue)}"

    def queue_of_dead_letters(self, key: str) -> str:
        """`<namespace><queue>.dlq` -> `<queue>`."""
        return key.removeprefix(self.namespace).removesuffix(".dlq")
