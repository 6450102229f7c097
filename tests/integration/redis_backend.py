"""The Redis Streams bus as a backend of tests/integration/test_harness_agrees.py (and of the
bus's own tests): the runtime's RedisTransport on the test bus server, in a key namespace of
the test's own."""

from __future__ import annotations

from typing import Any

from contracts.envelope import Envelope
from contracts.topology import exchange_name
from infra.messaging.hooks import Hooks
from infra.messaging.redisbus import RedisTransport
from infra.messaging.redisbus.fields import entries_of
from infra.observability.message_hooks import REDIS, default_hooks
from infra.settings import AmqpSettings, RedisBusSettings
from infra.testing import Recorder, Settled
from tests.integration.harness_backends import BusBackend
from tests.integration.waiting import eventually

# Fast upkeep, so crash redelivery and trimming show within a test's patience.
TEST_BUS = RedisBusSettings(visibility_timeout_s=1.0, sweep_interval_s=0.2, block_ms=100)


def redis_transport(
    url: str,
    service: str,
    namespace: str,
    settled: list[Settled],
    amqp: AmqpSettings,
    bus: RedisBusSettings = TEST_BUS,
) -> RedisTransport:
    """A transport whose deliveries are recorded in `settled`."""
    hooks = default_hooks(REDIS)
    recorded = Hooks(consume=(*hooks.consume, Recorder(settled)), publish=hooks.publish)
    settings = bus.model_copy(update={"namespace": namespace})
    return RedisTransport(url, service, amqp, settings, hooks=recorded)


class RedisBackend(BusBackend):
    def __init__(self, url: str, service: str, namespace: str, amqp: AmqpSettings) -> None:
        settled: list[Settled] = []
        self.transport = redis_transport(url, service, namespace, settled, amqp)
        super().__init__(self.transport.subscriber, self.transport.publisher)
        self.settled = settled

    async def deliver_again(self, envelope: Envelope) -> None:
        # A stream keeps every XADD: the same event published again is delivered again.
        await self.transport.publisher.publish(envelope)

    async def publish_raw(self, event_type: str, body: bytes, message_id: str) -> None:
        fields = {"body": body, "message_id": message_id, "exchange": exchange_name(event_type)}
        await self.transport.client.xadd(self.transport.keys.events(event_type), fields)  # type: ignore[arg-type]

    async def dead_letters(self, queue: str, count: int) -> list[dict[str, Any]]:
        key = self.transport.keys.dead_letters(queue)
        letters: list[dict[str, Any]] = []

        async def fetch() -> bool:
            entries = await self.transport.client.xrange(key)
            letters[:] = [dict(message.headers) for _, message in entries_of(entries)]
            return len(letters) >= count

        await eventually(fetch, timeout_s=15)
        assert len(letters) == count
        return letters
