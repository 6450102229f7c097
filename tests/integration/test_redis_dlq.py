"""The DLQ tool (`python -m infra.dlq --bus redis`) on the real bus Redis: list, show, replay
(dry run first; the copy reaches the failed queue only, through its retry stream, with the
replay headers) and purge, in a key namespace of the test's own."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from contracts.envelope import Envelope
from contracts.events import OrderPlaced
from infra.dlq.__main__ import main as dlq_main
from infra.messaging.errors import PermanentFailure
from infra.messaging.redisbus import RedisTransport
from infra.messaging.redisbus.fields import entries_of
from infra.settings import AmqpSettings
from infra.testing import Settled
from tests.integration.events import order_placed
from tests.integration.redis_backend import redis_transport
from tests.integration.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.redisbus]


async def test_the_dlq_tool_lists_shows_replays_and_purges_dead_letters_on_redis(
    bus_redis_url: str, bus_namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = order_placed(), order_placed()
    # By event id: the two deliveries are handled concurrently, in no promised order.
    failures = {str(first.event_id): "bad customer", str(second.event_id): "still bad"}
    handled: dict[str, list[str]] = {"one": [], "two": []}

    def handler(service: str) -> Any:
        async def handle(envelope: Envelope, event: Any) -> None:
            if service == "one" and str(envelope.event_id) in failures:
                raise PermanentFailure(failures.pop(str(envelope.event_id)))
            handled[service].append(str(envelope.event_id))

        return handle

    transports: list[RedisTransport] = []

    async def start(service: str) -> tuple[RedisTransport, str]:
        settled: list[Settled] = []
        transport = redis_transport(
            bus_redis_url, service, bus_namespace, settled, AmqpSettings(retry_delays_ms=[50])
        )
        await transport.connect()
        transports.append(transport)
        return transport, await transport.subscriber.subscribe(OrderPlaced, handler(service))

    try:
        failing, queue = await start("one")
        await start("two")  # the other queue of the same event type
        await failing.publisher.publish(first)
        await failing.publisher.publish(second)
        dlq = f"{queue}.dlq"
        dlq_key = failing.keys.dead_letters(queue)
        await eventually(lambda: _length(failing, dlq_key, 2), timeout_s=10)
        await eventually(lambda: len(handled["two"]) == 2, timeout_s=10)
        # Stop the failing queue's consumer, so the replayed copy can be looked at first.
        await failing.subscriber.stop()
        options = ["--bus", "redis", "--redis-url", bus_redis_url]
        options += ["--redis-namespace", bus_namespace, "--json"]

        async def cli(*argv: str, code: int = 0) -> Any:
            capsys.readouterr()
            assert await asyncio.to_thread(dlq_main, [*argv, *options]) == code
            out = capsys.readouterr().out
            return json.loads(out) if code == 0 else None

        assert (await cli("list"))["queues"] == [{"name": dlq, "messages": 2}]
        shown = (await cli("show", dlq))["messages"]
        by_id = {m["event_id"]: m for m in shown}
        assert len(shown) == 2
        assert set(by_id) == {str(first.event_id), str(second.event_id)}
        letter = by_id[str(first.event_id)]
        assert letter["reason"] == "permanent failure - PermanentFailure: bad customer"
        assert letter["original_queue"] == queue
        assert letter["attempts"] == 1
        dry = await cli("replay", dlq, "--filter", f"event_id={second.event_id}", "--dry-run")
        assert [w["target"] for w in dry["would_move"]] == [queue]
        assert (await cli("list"))["queues"] == [{"name": dlq, "messages": 2}]

        moved = await cli("replay", dlq, "--filter", f"event_id={second.event_id}")
        assert [m["target"] for m in moved["moved"]] == [queue]
        assert moved["left"] == 1
        assert (await cli("list"))["queues"] == [{"name": dlq, "messages": 1}]
        copies = entries_of(await failing.client.xrange(failing.keys.retries(queue)))
        assert len(copies) == 1
        headers = copies[0][1].headers
        assert copies[0][1].message_id == str(second.event_id)
        assert headers["x-replay-count"] == 1
        assert headers["x-replayed-from"] == dlq
        assert "x-first-failure-at" in headers
        assert not {"x-attempt", "x-exception-class", "x-dead-letter-reason"} & set(headers)
        # A queue nobody consumes is refused, and the letter stays.
        await cli("replay", dlq, "--to", "nobody.order-placed", code=2)

        await start("one")  # the failing queue's consumer back: it reads the replayed copy
        await eventually(lambda: handled["one"] == [str(second.event_id)], timeout_s=10)
        await asyncio.sleep(0.5)  # time enough for a stray second delivery anywhere
        assert handled["one"] == [str(second.event_id)]
        assert sorted(handled["two"]) == sorted([str(first.event_id), str(second.event_id)])

        await cli("purge", dlq, code=2)  # no --yes: nothing deleted
        assert (await cli("purge", dlq, "--yes"))["purged"] == 1
        assert (await cli("list", "--all"))["queues"] == [{"name": dlq, "messages": 0}]
    finally:
        for transport in transports:
            await transport.close()


async def _length(transport: RedisTransport, key: str, count: int) -> bool:
    return bool(await transport.client.xlen(key) >= count)
