"""What JetStream adds to the agreement tests (tests/integration/test_harness_agrees.py), on a
real server with streams under a prefix of each test's own: de-duplication by event id, a
consumer that dies holding a delivery, a message that kills every consumer, a delivery the
server hands out twice, jitter within a tier, and the retry copy's story headers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts.envelope import Envelope
from contracts.events import OrderPlaced
from contracts.topology import jittered_delays
from infra.dlq.__main__ import main as dlq_main
from infra.messaging.errors import PermanentFailure, RetryLater
from infra.messaging.hooks import Hooks
from infra.messaging.jetstream import wire
from infra.messaging.jetstream.bus import JetStreamBus
from infra.messaging.jetstream.names import consumer_name
from infra.messaging.jetstream.settlement import DELIVERY_LIMIT
from infra.messaging.jetstream.subscriber import FETCH_WAIT_S, JetStreamSubscriber
from infra.observability.message_hooks import NATS, default_hooks
from infra.settings import AmqpSettings, NatsSettings
from infra.testing import Recorder, Settled
from tests.integration.events import order_placed
from tests.integration.waiting import eventually
from tests.nats_streams import delete_streams, unique_prefix

pytestmark = [pytest.mark.integration, pytest.mark.natsbus]
Handler = Callable[[Envelope, Any], Awaitable[None]]
ACK_WAIT_S = 1.0


class ConsumerKilled(BaseException):
    """Escapes dispatch like a crash: the delivery is left unsettled, never acked."""


class Node:
    """One process's JetStream transport, recording how deliveries ended."""

    def __init__(
        self, url: str, service: str, prefix: str, amqp: AmqpSettings, ack_wait_s: float
    ) -> None:
        self.settled: list[Settled] = []
        hooks = default_hooks(NATS)
        recorded = Hooks(consume=(*hooks.consume, Recorder(self.settled)), publish=hooks.publish)
        settings = NatsSettings(prefix=prefix, ack_wait_s=ack_wait_s)
        self.bus = JetStreamBus(url, service, settings, recorded)
        self.consumer = JetStreamSubscriber(self.bus, service, amqp)

    async def dead_letters(self, queue: str, count: int) -> list[dict[str, Any]]:
        stream = self.bus.names.dead_letter_stream(queue)

        async def stored() -> bool:
            return (await self.bus.js.stream_info(stream)).state.messages >= count

        await eventually(stored, timeout_s=20)
        letters = []
        for seq in range(1, count + 1):
            letters.append(
                wire.application_headers((await self.bus.js.get_msg(stream, seq)).headers)
            )
        return letters


@pytest.fixture
async def pipeline(nats_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Opens nodes of one service on streams of this test's own; closes and deletes them."""
    prefix, service = unique_prefix(), f"nats-check-{uuid.uuid4().hex[:6]}"
    nodes: list[Node] = []

    @asynccontextmanager
    async def open_node(ack_wait_s: float = ACK_WAIT_S, **amqp: Any) -> AsyncIterator[Node]:
        node = Node(nats_url, service, prefix, AmqpSettings(**amqp), ack_wait_s)
        nodes.append(node)
        await node.bus.connect()
        yield node

    async def node(ack_wait_s: float = ACK_WAIT_S, **amqp: Any) -> Node:
        return await open_node(ack_wait_s, **amqp).__aenter__()

    try:
        yield node
    finally:
        for opened in nodes:
            await opened.consumer.stop(timeout_s=0.5)
            await opened.bus.close()
        await delete_streams(nats_url, prefix)


async def test_the_same_event_published_twice_is_stored_and_delivered_once(
    pipeline: Callable[..., Awaitable[Node]],
) -> None:
    node = await pipeline()
    seen: list[str] = []

    async def handler(envelope: Envelope, event: Any) -> None:
        seen.append(str(envelope.event_id))

    await node.consumer.subscribe(OrderPlaced, handler)
    envelope = order_placed()
    await node.bus.publish(envelope)
    await node.bus.publish(envelope)  # the outbox's sweep racing its relay
    await eventually(lambda: len(node.settled) >= 1)
    await asyncio.sleep(2 * ACK_WAIT_S)
    info = await node.bus.js.stream_info(node.bus.names.events_stream)
    assert info.state.messages == 1
    assert seen == [str(envelope.event_id)]
    assert [s.outcome for s in node.settled] == ["acked"]


async def test_a_delivery_held_by_a_consumer_that_died_is_delivered_again_after_the_ack_wait(
    pipeline: Callable[..., Awaitable[Node]],
) -> None:
    first, second = await pipeline(), await pipeline()
    held = asyncio.Event()
    release = asyncio.Event()

    async def hangs(envelope: Envelope, event: Any) -> None:
        held.set()
        await release.wait()

    handled: list[str] = []

    async def handles(envelope: Envelope, event: Any) -> None:
        handled.append(str(envelope.event_id))

    queue = await first.consumer.subscribe(OrderPlaced, hangs)
    envelope = order_placed()
    await first.bus.publish(envelope)
    await asyncio.wait_for(held.wait(), 10)
    await first.bus.close()  # the process dies: no ack, no more in_progress
    started = time.monotonic()
    assert await second.consumer.subscribe(OrderPlaced, handles) == queue
    await eventually(lambda: handled, timeout_s=15)
    assert handled == [str(envelope.event_id)]
    assert time.monotonic() - started >= ACK_WAIT_S * 0.5
    await eventually(lambda: second.settled, timeout_s=5)
    assert [(s.outcome, s.attempt) for s in second.settled] == [("acked", 1)]
    release.set()


async def test_a_message_that_kills_its_consumer_ends_in_the_dead_letter_stream(
    pipeline: Callable[..., Awaitable[Node]],
) -> None:
    # An ack wait of two and a half fetch waits: each redelivery of this crash loop falls due
    # half a fetch away from the expiry of the pull request waiting for it. One falling due as
    # that request expires makes the server repeat a delivery and use up a count (the
    # subscriber's "Repeated deliveries"; provoked on purpose in the test below), which would
    # leave 2 attempts here, not 3.
    node = await pipeline(delivery_limit=3, ack_wait_s=2.5 * FETCH_WAIT_S)
    attempts: list[int] = []

    async def crashes(envelope: Envelope, event: Any) -> None:
        attempts.append(1)
        raise ConsumerKilled

    queue = await node.consumer.subscribe(OrderPlaced, crashes)
    envelope = order_placed()
    await node.bus.publish(envelope)
    [letter] = await node.dead_letters(queue, 1)
    assert len(attempts) == 3
    assert letter["x-dead-letter-reason"] == DELIVERY_LIMIT
    assert letter["x-exception-class"] == "DeliveryLimitExceeded"
    assert letter["x-event-id"] == str(envelope.event_id)
    assert letter["x-original-queue"] == queue
    assert letter["x-original-exchange"] == "events.order-placed"


# The server's repeated delivery (subscriber docstring, "Repeated deliveries") is gone from
# this version on (nats-server#5305).
REPEATS_FIXED_IN = (2, 10, 14)
# Long enough for the server's consumer to look at a new pull request while its inbox is there.
SETTLE_S = 0.2


async def leave_orphan_pull_request(client: Client, stream: str, consumer: str) -> None:
    """Leave `consumer` a waiting pull request whose inbox is gone: the server keeps it while
    its inbox has a subscriber, and nothing makes it look again before the next redelivery
    falls due (a consumer info would: do not ask for one meanwhile)."""
    inbox = client.new_inbox()
    subscription = await client.subscribe(inbox)
    request = json.dumps({"batch": 1, "expires": 60 * 10**9}).encode()
    await client.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", request, reply=inbox)
    js = client.jetstream()

    async def waiting() -> bool:
        return bool((await js.consumer_info(stream, consumer)).num_waiting == 1)

    await eventually(waiting, timeout_s=5)
    await asyncio.sleep(SETTLE_S)
    await subscription.unsubscribe()
    await client.flush()


async def test_a_delivery_the_server_hands_out_again_is_handled_once(
    pipeline: Callable[..., Awaitable[Node]], nats_url: str
) -> None:
    # One prefetch slot: while B is in hand the subscriber has no pull request waiting, so
    # when A's redelivery falls due only the orphan request is there. The server then drops
    # that redelivery and steps its consumer back onto B, which it hands out again as
    # delivery 1 after B was handled and acked.
    # An ack wait long enough for the orphan request to be in place before A is due again,
    # however loaded the machine.
    ack_wait_s = 3 * ACK_WAIT_S
    node = await pipeline(prefetch=1, ack_wait_s=ack_wait_s)
    version = node.bus.client.connected_server_version
    if (version.major, version.minor, version.patch) >= REPEATS_FIXED_IN:
        pytest.skip(f"nats-server {version} hands out no delivery twice")
    a, b = order_placed(), order_placed()
    calls = {a.event_id: 0, b.event_id: 0}
    crashed_at: list[float] = []
    b_held, release_b = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    async def handler(envelope: Envelope, event: Any) -> None:
        calls[envelope.event_id] += 1
        if envelope.event_id == a.event_id and calls[a.event_id] == 1:
            crashed_at.append(loop.time())
            raise ConsumerKilled  # A is left unsettled: due again after the ack wait
        if envelope.event_id == b.event_id:
            b_held.set()
            await release_b.wait()

    queue = await node.consumer.subscribe(OrderPlaced, handler)
    stream, consumer = node.bus.names.events_stream, consumer_name(queue)
    side = await nats.connect(nats_url)
    acks: list[tuple[int, int]] = []  # (stream sequence, delivery count) of each ack

    async def acked(message: Msg) -> None:
        if message.data in (b"", Msg.Ack.Ack):  # an empty body acks too (ack_sync sends one)
            tokens = message.subject.split(".")  # $JS.ACK.<stream>.<consumer>.<count>.<seq>...
            acks.append((int(tokens[5]), int(tokens[4])))

    try:
        await side.subscribe(f"$JS.ACK.{stream}.{consumer}.>", cb=acked)
        await side.flush()
        await node.bus.publish(a)  # stream sequence 1
        await node.bus.publish(b)  # stream sequence 2
        await asyncio.wait_for(b_held.wait(), 10)
        await leave_orphan_pull_request(side, stream, consumer)
        assert loop.time() < crashed_at[0] + ack_wait_s, "set up after A was due again"
        # A's redelivery fell due one ack wait after its crash; look only well after that.
        await asyncio.sleep(max(0.0, crashed_at[0] + 2 * ack_wait_s - loop.time()))
        info = await node.bus.js.consumer_info(stream, consumer)
        assert info.delivered.stream_seq == 1, "the server did not step its consumer back"
        release_b.set()
        # B's delivery 1 acked twice: once handled, once repeated. A is not lost: a later
        # delivery of it is handled and acked.
        await eventually(lambda: acks.count((2, 1)) == 2, timeout_s=10)
        await eventually(lambda: any(sequence == 1 for sequence, _ in acks), timeout_s=10)
    finally:
        release_b.set()
        await side.close()
    assert calls == {a.event_id: 2, b.event_id: 1}


async def test_a_retry_waits_one_of_its_tiers_jittered_delays_with_the_story_headers(
    pipeline: Callable[..., Awaitable[Node]],
) -> None:
    delay_ms, jitter = 600, 0.5
    node = await pipeline(retry_delays_ms=[delay_ms], retry_jitter=jitter)
    moments: list[float] = []

    async def fails_once(envelope: Envelope, event: Any) -> None:
        moments.append(time.monotonic())
        if len(moments) == 1:
            raise RetryLater("not yet")

    await node.consumer.subscribe(OrderPlaced, fails_once)
    await node.bus.publish(order_placed())
    await eventually(lambda: len(node.settled) >= 2, timeout_s=10)
    assert [(s.outcome, s.attempt) for s in node.settled] == [("retried", 1), ("acked", 2)]
    waited_ms = (moments[1] - moments[0]) * 1000
    variants = jittered_delays(delay_ms, jitter)
    # The copy is due after the variant picked; the server redelivers it within a few tens
    # of milliseconds of that.
    assert min(variants) - 20 <= waited_ms <= max(variants) + 400, (waited_ms, variants)


async def test_retries_exhausted_dead_letter_keeps_the_first_failure_and_the_attempts(
    pipeline: Callable[..., Awaitable[Node]],
) -> None:
    node = await pipeline(retry_delays_ms=[50, 50], retry_jitter=0)

    async def fails(envelope: Envelope, event: Any) -> None:
        raise RetryLater(f"down at {time.monotonic()}")

    queue = await node.consumer.subscribe(OrderPlaced, fails)
    await node.bus.publish(order_placed())
    [letter] = await node.dead_letters(queue, 1)
    assert letter["x-attempts"] == 3
    assert letter["x-first-failure-at"] < letter["x-last-failure-at"]
    assert letter["x-attempt"] == 3
    # A traceback's lines survive NATS headers, which are single lines of text.
    assert letter["x-traceback"].startswith("Traceback")
    assert "\n" in letter["x-traceback"]


async def test_the_dlq_tool_lists_shows_replays_and_purges_dead_letters_on_nats(
    pipeline: Callable[..., Awaitable[Node]], nats_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    node = await pipeline()
    first, second = order_placed(), order_placed()
    # By event id: the two deliveries are handled concurrently, in no promised order.
    failures = {str(first.event_id): "bad customer", str(second.event_id): "still bad"}
    replays: list[Any] = []

    async def handler(envelope: Envelope, event: Any) -> None:
        if str(envelope.event_id) in failures:
            raise PermanentFailure(failures.pop(str(envelope.event_id)))
        replays.append(envelope.event_id)

    queue = await node.consumer.subscribe(OrderPlaced, handler)
    await node.bus.publish(first)
    await node.bus.publish(second)
    await node.dead_letters(queue, 2)
    dlq = f"{queue}.dlq"
    options = ["--bus", "nats", "--nats-url", nats_url, "--nats-prefix", node.bus.settings.prefix]

    async def cli(*argv: str) -> Any:
        capsys.readouterr()
        assert await asyncio.to_thread(dlq_main, [*argv, *options, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    assert (await cli("list"))["queues"] == [{"name": dlq, "messages": 2}]
    shown = (await cli("show", dlq))["messages"]
    by_id = {m["event_id"]: m for m in shown}
    assert len(shown) == 2
    assert set(by_id) == {str(first.event_id), str(second.event_id)}
    reason = by_id[str(first.event_id)]["reason"]
    assert reason == "permanent failure - PermanentFailure: bad customer"
    moved = await cli("replay", dlq, "--filter", f"event_id={second.event_id}")
    assert [m["target"] for m in moved["moved"]] == [queue]
    assert moved["left"] == 1
    await eventually(lambda: replays == [second.event_id], timeout_s=10)
    assert (await cli("purge", dlq, "--yes"))["purged"] == 1
    assert (await cli("list", "--all"))["queues"] == [{"name": dlq, "messages": 0}]
