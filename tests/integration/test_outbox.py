"""The MongoDB outbox relay against the real broker and MongoDB server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from contracts.envelope import Envelope
from contracts.events import OrderConfirmed, OrderRejected
from contracts.topology import exchange_name
from infra.messaging import codec
from infra.messaging.broker import Broker
from infra.messaging.outbox import OutboxRelay, merge_updates, outbox_append, outbox_fields
from infra.settings import OutboxSettings
from tests.integration.events import collected, listening
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration


def confirmed(order_id: str) -> Envelope:
    return Envelope.wrap(
        OrderConfirmed(order_id=order_id, customer_id="c-1", total_cents=100), producer="itest"
    )


async def listen(broker: Broker) -> aio_pika.abc.AbstractQueue:
    return await listening(await broker.new_channel(), "OrderConfirmed")


async def received(queue: aio_pika.abc.AbstractQueue, count: int) -> list[Envelope]:
    return [envelope for envelope, _ in await collected(queue, count)]


async def test_fast_path_publishes_in_order_and_marks_sent(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    queue = await listen(broker)
    collection = mongo_db["aggregates"]
    relay = OutboxRelay(broker, collection, OutboxSettings(poll_interval_s=0.2))
    await relay.start()
    first, second = confirmed("o-1"), confirmed("o-1")
    await collection.insert_one({"_id": "o-1", **outbox_fields([first])})
    relay.notify("o-1", [first])
    await collection.update_one({"_id": "o-1"}, outbox_append([second]))
    relay.notify("o-1", [second])

    assert await received(queue, 2) == [first, second]

    async def all_sent() -> bool:
        document = await collection.find_one({"_id": "o-1"})
        assert document is not None
        return document["outbox_pending"] is False and all(
            e["sent_at"] is not None for e in document["outbox"]
        )

    await eventually(all_sent)
    await relay.stop()


class _CountUpdates(monitoring.CommandListener):
    def __init__(self, collection: str) -> None:
        self.collection, self.updates = collection, 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update" and event.command.get("update") == self.collection:
            self.updates += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_confirmed_events_are_marked_sent_in_bulk_and_not_swept_meanwhile(
    broker: Broker, mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    updates = _CountUpdates("aggregates")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, tz_aware=True, event_listeners=[updates]
    )
    collection = client[mongo_db.name]["aggregates"]
    queue = await listen(broker)
    # A sweep every 0.1 s that takes events older than 0.5 s: it would republish what waits
    # (1 s) to be marked if waiting events were not kept in flight. (Not 0: an event is
    # written a moment before it is announced, as in the repositories.)
    settings = OutboxSettings(poll_interval_s=0.1, grace_s=0.5, mark_linger_s=1.0)
    relay = OutboxRelay(broker, collection, settings)
    await relay.start()
    events = [confirmed(f"o-bulk-{i}") for i in range(20)]
    for event in events:
        await collection.insert_one({"_id": event.correlation_id, **outbox_fields([event])})
        relay.notify(event.correlation_id, [event])

    assert {e.event_id for e in await received(queue, 20)} == {e.event_id for e in events}

    async def all_marked() -> bool:
        return await collection.count_documents({"outbox_pending": False}) == len(events)

    await eventually(all_marked, timeout_s=10)
    assert await collection.count_documents({"outbox.sent_at": None}) == 0
    await relay.stop()
    assert await queue.get(fail=False) is None  # each event was published once
    # 20 documents, 20 events: a write or two, not 20.
    assert 1 <= updates.updates <= 3, updates.updates
    await client.close()


async def test_sweep_publishes_what_no_fast_path_announced(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """A process that crashed between its write and its publish: the event is still sent."""
    queue = await listen(broker)
    collection = mongo_db["aggregates"]
    orphan = confirmed(str(uuid.uuid4()))
    await collection.insert_one({"_id": orphan.correlation_id, **outbox_fields([orphan])})
    relay = OutboxRelay(broker, collection, OutboxSettings(poll_interval_s=0.1, grace_s=0))
    await relay.start()

    assert await received(queue, 1) == [orphan]
    await eventually(
        lambda: collection.count_documents({"_id": orphan.correlation_id, "outbox_pending": False})
    )
    await relay.stop()


async def test_an_append_racing_the_mark_keeps_the_document_pending(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    collection = mongo_db["aggregates"]
    sent, late = confirmed("o-2"), confirmed("o-2")
    await collection.insert_one({"_id": "o-2", **outbox_fields([sent])})
    await collection.update_one(
        {"_id": "o-2"}, merge_updates({"$set": {"status": "X"}}, outbox_append([late]))
    )
    relay = OutboxRelay(broker, collection, OutboxSettings())
    await relay._mark_sent({"o-2": [str(sent.event_id)]})
    document = await collection.find_one({"_id": "o-2"})
    assert document is not None
    assert document["outbox_pending"] is True
    assert [e["sent_at"] is None for e in document["outbox"]] == [False, True]


async def test_marking_a_documents_last_unsent_events_clears_its_flag_in_one_write(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    collection = mongo_db["aggregates"]
    first, second, third = confirmed("o-4"), confirmed("o-4"), confirmed("o-4")
    await collection.insert_one({"_id": "o-4", **outbox_fields([first, second, third])})
    relay = OutboxRelay(broker, collection, OutboxSettings())
    await relay._mark_sent({"o-4": [str(first.event_id)]})
    await relay._mark_sent({"o-4": [str(second.event_id), str(third.event_id)]})
    document = await collection.find_one({"_id": "o-4"})
    assert document is not None
    assert document["outbox_pending"] is False
    assert all(e["sent_at"] is not None for e in document["outbox"])


async def test_an_unroutable_event_is_counted_kept_and_sent_once_routable(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """No queue is bound to events.order-rejected in this vhost until the test binds one."""
    collection = mongo_db["aggregates"]
    event = Envelope.wrap(
        OrderRejected(order_id="o-3", customer_id="c-1", reason="no stock"), producer="itest"
    )
    returned = {"event_type": "OrderRejected", "reason": "returned"}
    before = REGISTRY.get_sample_value("messages_publish_failures_total", returned) or 0
    await collection.insert_one({"_id": "o-3", **outbox_fields([event])})
    relay = OutboxRelay(broker, collection, OutboxSettings(poll_interval_s=0.1, grace_s=0))
    await relay.start()
    relay.notify("o-3", [event])

    await eventually(
        lambda: (
            (REGISTRY.get_sample_value("messages_publish_failures_total", returned) or 0) > before
        )
    )
    assert await collection.count_documents({"_id": "o-3", "outbox_pending": True}) == 1

    channel = await broker.new_channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange_name("OrderRejected"))

    async def delivered() -> Envelope | None:
        message = await queue.get(fail=False, no_ack=True)
        return None if message is None else codec.decode(message.body)[0]

    assert await eventually(delivered) == event
    await eventually(lambda: collection.count_documents({"_id": "o-3", "outbox_pending": False}))
    await relay.stop()


async def test_retention_prunes_old_sent_events_and_keeps_unsent_ones(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    collection = mongo_db["aggregates"]
    old, recent, unsent = (confirmed("o-4") for _ in range(3))
    long_ago = datetime.now(UTC) - timedelta(days=40)
    entries = outbox_fields([old, recent, unsent])["outbox"]
    entries[0]["sent_at"] = long_ago
    entries[1]["sent_at"] = datetime.now(UTC)
    inbox = [
        {"event_id": "in-1", "applied_at": long_ago},
        {"event_id": "in-2", "applied_at": datetime.now(UTC)},
    ]
    await collection.insert_one({"_id": "o-4", "outbox": entries, "inbox": inbox})
    relay = OutboxRelay(broker, collection, OutboxSettings(retention_days=30))

    assert await relay.prune() == 1
    document = await collection.find_one({"_id": "o-4"})
    assert document is not None
    assert [e["event_id"] for e in document["outbox"]] == [
        str(recent.event_id),
        str(unsent.event_id),
    ]
    assert [e["event_id"] for e in document["inbox"]] == ["in-2"]


async def test_the_sweep_leaves_events_queued_for_the_fast_path_alone(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    collection = mongo_db["aggregates"]
    queued = confirmed(str(uuid.uuid4()))
    await collection.insert_one({"_id": queued.correlation_id, **outbox_fields([queued])})
    relay = OutboxRelay(broker, collection, OutboxSettings(grace_s=0))
    relay.notify(queued.correlation_id, [queued])  # queued; the relay loop is not running
    sweeps_before = REGISTRY.get_sample_value("outbox_events_relayed_total", {"path": "sweep"})
    await relay._sweep()
    after = REGISTRY.get_sample_value("outbox_events_relayed_total", {"path": "sweep"})
    assert after == sweeps_before  # nothing published twice
    queue = await listen(broker)
    await relay.start()  # the fast path now takes it
    assert await received(queue, 1) == [queued]
    await relay.stop()
