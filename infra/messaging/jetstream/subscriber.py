"""Consumes a service's queues from JetStream with the runtime's one ack policy
(infra.messaging.dispatch decides, this module carries it out).

Each queue is two durable pull consumers (infra.messaging.jetstream.names): `<queue>` reads
its event type's subject in the events stream, `<queue>_retry` the queue's retry subject.
Both feed the same dispatch. Per consumer at most `prefetch` deliveries are fetched and in
hand; across the process at most `max_in_flight` handlers run (the AMQP_* settings, as on
RabbitMQ). A delivery is acked (and the ack awaited) only after dispatch settled it; one not
acked within NATS_ACK_WAIT_S (a consumer that died holding it) is delivered again, while a
handler still at work extends that wait (`in_progress`) every third of it.

Retries. A `nak(delay)` would deliver the same stored message again, so it could not carry
the headers RabbitMQ's retries carry (`x-attempt`, the failure story). So a retry is what it
is on RabbitMQ: a copy with the story headers, published (PubAck awaited) to the queue's
retry subject with `Retry-Due-At` = now + the delay the retry policy picked (the same tiers and
jitter), before the original is acked. The retry consumer sees the copy at once, and a copy
not yet due is nak'ed with the time it still has to wait: the schedule is the stored copy and
the server's redelivery timer, both durable, not a sleeping consumer. A copy's story headers
are then identical to RabbitMQ's: the DLQ tool, the tests and operators read one format.

Poison messages. A delivery that kills its consumer before settling comes back after the ack
wait; past AMQP_DELIVERY_LIMIT deliveries (counted by the server: `num_delivered`) it is
dead-lettered without being handled, with the story (reason "delivery limit"). The consumers'
MaxDeliver is unlimited on purpose: a message past MaxDeliver stays in its stream, never
delivered again (only an advisory says so), which would lose it; counting here ends the crash
loop in the dead-letter stream instead. A retry copy's early delivery counts once more.

Repeated deliveries. The server may hand out one delivery twice, the same stream sequence with
the same `num_delivered`. nats-server before 2.10.14 does when a redelivery falls due while the
consumer's only waiting pull request has just expired or lost its inbox (a fetch's request
expiring that moment, a reconnect): it drops that redelivery (its count is used up) and steps
the consumer's stream position back by one, so the newest message it had handed out comes
again as delivery 1, in hand here or acked already. So each consumer remembers the last
REMEMBERED_DELIVERIES deliveries it took in (recent_deliveries) and handles each once: a repeat
of one acked here is acked again, unhandled (the server holds the repeat as unacked); a
repeat of one in hand or left unsettled is left alone, as the first copy's ack settles it
(acks count by stream sequence) and without one the ack wait brings it back with a higher
count. Nothing is lost or held that way; a used-up count can mean one attempt fewer before the
delivery limit. A repeat of a delivery another process took in is handled again.

Dead letters go to `<queue>.dlq` (a stream per queue). Copies carry `Nats-Msg-Id` =
`<kind>-<queue>-<stream>-<sequence>` of the delivery they come from, so a delivery handled
twice (its ack lost) parks one copy, and two queues' copies of one event never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts.events import Event
from contracts.topology import SUBSCRIPTIONS, jittered_delays, queue_name
from infra.messaging.dispatch import Dispatch, Handler, Subscription
from infra.messaging.jetstream import wire
from infra.messaging.jetstream.bus import JetStreamBus, now_ms
from infra.messaging.jetstream.names import consumer_name, retry_consumer_name
from infra.messaging.jetstream.recent_deliveries import Intake, RecentDeliveries
from infra.messaging.jetstream.settlement import JetStreamSettlement
from infra.settings import AmqpSettings

log = logging.getLogger(__name__)

# How long one fetch waits for messages; also how long `stop` waits for a fetch to end.
FETCH_WAIT_S = 1.0
# Deliveries waiting in a consumer for their ack or their delay (retry copies): far above
# what a process holds (prefetch), so only a storm of delayed retries comes near it.
MAX_ACK_PENDING = 10_000
# A retry copy is delivered once on arrival, before it is due (then nak'ed until it is).
EARLY_DELIVERIES = 1
# Deliveries each consumer remembers to tell a repeat. A repeat is of the newest message the
# consumer had handed out, so only redeliveries come between its first copy and it.
REMEMBERED_DELIVERIES = 4096


class JetStreamSubscriber:
    def __init__(self, bus: JetStreamBus, service: str, settings: AmqpSettings) -> None:
        self._bus = bus
        self._service = service
        self._settings = settings
        self._dispatch = Dispatch(service, bus.hooks.consume)
        self._limit = asyncio.Semaphore(settings.max_in_flight)
        self._subscriptions: list[JetStreamContext.PullSubscription] = []
        self._loops: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def subscribe(
        self, event_type: type[Event], handler: Handler, retry_delays_ms: list[int] | None = None
    ) -> str:
        """Declare this service's consumers for `event_type` (and its DLQ stream), and
        consume them."""
        subscribed = SUBSCRIPTIONS.get(self._service)
        if subscribed is not None and event_type not in subscribed:
            raise ValueError(f"{self._service} does not subscribe to {event_type.event_type}")
        settings = self._settings
        delays = settings.retry_delays_ms if retry_delays_ms is None else retry_delays_ms
        tiers = tuple(jittered_delays(d, settings.retry_jitter) for d in delays)
        queue = queue_name(self._service, event_type.event_type)
        subscription = Subscription(queue, event_type.event_type, handler, tiers)
        names = self._bus.names
        await self._bus.ensure_dead_letter_stream(queue)
        work = await self._consumer(
            names.events_stream, consumer_name(queue), names.event_subject(event_type.event_type)
        )
        retries = await self._consumer(
            names.retries_stream, retry_consumer_name(queue), names.retry_subject(queue)
        )
        for pull, early in ((work, 0), (retries, EARLY_DELIVERIES)):
            self._loops.append(asyncio.create_task(self._consume(pull, subscription, early)))
        return queue

    async def _consumer(
        self, stream: str, durable: str, subject: str
    ) -> JetStreamContext.PullSubscription:
        js = self._bus.js
        config = ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._bus.settings.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=MAX_ACK_PENDING,
        )
        try:
            await js.add_consumer(stream, config)
        except nats.js.errors.BadRequestError as error:
            # It exists with another configuration (an ack wait changed): the server keeps
            # the old one until the consumer is deleted; consuming it is still right.
            log.warning("consumer %s on %s kept as it is: %s", durable, stream, error)
        pull = await js.pull_subscribe_bind(durable=durable, stream=stream)
        self._subscriptions.append(pull)
        return pull

    async def _consume(
        self, pull: JetStreamContext.PullSubscription, subscription: Subscription, early: int
    ) -> None:
        """Fetch while not stopping: as many deliveries as this consumer has free slots."""
        prefetch = self._settings.prefetch
        slots = asyncio.Semaphore(prefetch)
        recent = RecentDeliveries(REMEMBERED_DELIVERIES)
        while not self._stopping:
            await slots.acquire()
            wanted = 1
            while wanted < prefetch and not slots.locked():
                await slots.acquire()
                wanted += 1
            messages: list[Msg] = []
            try:
                messages = await pull.fetch(wanted, timeout=FETCH_WAIT_S)
            except TimeoutError:  # nothing to fetch (nats.errors.TimeoutError is one)
                pass
            except Exception as error:  # the connection is away: its reconnect brings it back
                log.debug("fetch on %s failed: %r", subscription.queue, error)
                await asyncio.sleep(FETCH_WAIT_S)
            for _ in range(wanted - len(messages)):
                slots.release()
            for message in messages:
                task = asyncio.create_task(self._deliver(subscription, message, early, recent))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
                task.add_done_callback(lambda _: slots.release())

    async def _deliver(
        self, subscription: Subscription, message: Msg, early: int, recent: RecentDeliveries
    ) -> None:
        settlement = JetStreamSettlement(self._bus, self._service, subscription.queue, message)
        sequence, delivered = message.metadata.sequence.stream, message.metadata.num_delivered
        intake = recent.take(sequence, delivered)
        wait_ms = wire.due_at_ms(message.headers) - now_ms()
        if wait_ms > 0:  # a retry copy not due yet (a repeat too: it is not handled here)
            with contextlib.suppress(Exception):  # lost: the ack wait brings it back
                await message.nak(delay=wait_ms / 1000)
            return
        if intake is not Intake.NEW:
            log.warning(
                "%s: delivery %d of stream sequence %d came again (%s); not handled again",
                subscription.queue,
                delivered,
                sequence,
                intake.value,
            )
            if intake is Intake.REPEAT_OF_ACKED:
                await settlement.ack()
            return
        subject = self._bus.names.unprefixed(message.subject)
        inbound = wire.inbound(message.data, message.headers, subject)
        limit = self._settings.delivery_limit + early
        async with self._limit:
            if delivered > limit:
                await settlement.dead_letter_poison(inbound, delivered, limit)
            else:
                async with _kept_alive(message, self._bus.settings.ack_wait_s):
                    await self._dispatch(subscription, inbound, settlement)
        if settlement.acked:
            recent.acked(sequence, delivered)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop fetching, then let the deliveries in hand finish (bounded)."""
        self._stopping = True
        if self._loops:
            _, pending = await asyncio.wait(self._loops, timeout=FETCH_WAIT_S + 1)
            for loop in pending:
                loop.cancel()
        self._loops.clear()
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=timeout_s)
        for pull in self._subscriptions:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await pull.unsubscribe()
        self._subscriptions.clear()


@contextlib.asynccontextmanager
async def _kept_alive(message: Msg, ack_wait_s: float) -> AsyncIterator[None]:
    """While the handler works, tell the server every third of the ack wait, so a slow
    handler is not taken for a dead one (and its delivery handed to another consumer)."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(ack_wait_s / 3)
            with contextlib.suppress(Exception):  # lost: at worst a duplicate delivery
                await message.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
