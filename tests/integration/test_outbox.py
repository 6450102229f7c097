"""The MongoDB outbox relay against the real broker and MongoDB server."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from contracts.envelope import Envelope
from contracts.events import OrderConfirmed, OrderRejected
from contracts.topology import exchange_name
from infra.messaging import codec
from infra.messaging.broker import Broker
from infra.messaging.outbox import (
    OutboxRelay,
    merge_updates,
    outbox_append,
    outbox_entry,
    outbox_fields,
)
from infra.messaging.outbox_confirmations import unannounced_events
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


async def test_fast_path_publishes_in_order_and_records_the_confirms(
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
    await eventually(lambda: none_unannounced(collection))
    await relay.stop()


async def write_and_notify(
    collection: AsyncCollection[dict[str, Any]], relay: OutboxRelay, events: list[Envelope]
) -> None:
    """Each event in a document of its own, handed to the relay as a repository does."""
    for event in events:
        await collection.insert_one({"_id": event.correlation_id, **outbox_fields([event])})
        relay.notify(event.correlation_id, [event])


async def none_unannounced(collection: AsyncCollection[dict[str, Any]]) -> bool:
    return await unannounced_events(collection) == []


async def swept_past(relay: OutboxRelay, collection: AsyncCollection[dict[str, Any]]) -> None:
    """Until the relay's sweep has moved past every document now in `collection`."""
    latest = await collection.find_one({}, sort=[("outbox_at", -1)])
    assert latest is not None

    def passed() -> bool:
        through = relay.swept_through
        return through is not None and through >= latest["outbox_at"]

    await eventually(passed, timeout_s=10)


class _CountWrites(monitoring.CommandListener):
    def __init__(self) -> None:
        self.writes: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("insert", "update", "delete"):
            self.writes[f"{event.command_name} {event.command[event.command_name]}"] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_confirms_go_to_the_log_in_one_write_and_nothing_is_swept_meanwhile(
    broker: Broker, mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    counted = _CountWrites()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_url, tz_aware=True, event_listeners=[counted]
    )
    collection = client[mongo_db.name]["aggregates"]
    queue = await listen(broker)
    # A sweep every 0.1 s that takes events older than 0.5 s: it would republish what is
    # confirmed but not yet in the log (1 s) if the relay did not remember its own confirms.
    settings = OutboxSettings(poll_interval_s=0.1, grace_s=0.5, mark_linger_s=1.0)
    relay = OutboxRelay(broker, collection, settings)
    await relay.start()
    events = [confirmed(f"o-bulk-{i}") for i in range(20)]
    await write_and_notify(collection, relay, events)

    assert {e.event_id for e in await received(queue, 20)} == {e.event_id for e in events}
    await eventually(lambda: none_unannounced(collection), timeout_s=10)
    await swept_past(relay, collection)  # the sweep has looked at every document since
    await relay.stop()
    assert await queue.get(fail=False) is None  # each event was published once
    # 20 documents, 20 events: not one write back into the documents, one or two log writes.
    assert counted.writes["update aggregates"] == 0, counted.writes
    assert 1 <= counted.writes["insert outbox_confirmed"] <= 2, counted.writes
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
    await eventually(lambda: none_unannounced(collection))
    await relay.stop()


async def test_a_backlog_of_several_batches_is_swept_at_once_not_a_batch_per_interval(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """A collection appended to faster than one batch per poll interval (or a backlog after
    an outage) once left the sweep further behind with every interval: a full batch, all
    confirmed, is now followed by the next sweep at once."""
    queue = await listen(broker)
    collection = mongo_db["aggregates"]
    orphans = [confirmed(str(uuid.uuid4())) for _ in range(12)]
    for orphan in orphans:  # one millisecond apart at least: batches end between documents
        await collection.insert_one({"_id": orphan.correlation_id, **outbox_fields([orphan])})
        await asyncio.sleep(0.002)
    settings = OutboxSettings(poll_interval_s=60, grace_s=0, batch_size=4)
    relay = OutboxRelay(broker, collection, settings)
    await relay.start()

    # Three batches; at one per poll interval the last would come 2 minutes from now.
    assert Counter(e.event_id for e in await received(queue, 12)) == Counter(
        e.event_id for e in orphans
    )
    await swept_past(relay, collection)
    await relay.stop()


async def test_an_append_after_the_sweep_passed_is_swept_alone(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """A document the sweep has found confirmed gets a new event from a writer that died
    before publishing it: the sweep reads the document again and publishes that one only."""
    queue = await listen(broker)
    collection = mongo_db["aggregates"]
    relay = OutboxRelay(broker, collection, OutboxSettings(poll_interval_s=0.1, grace_s=0))
    await relay.start()
    sent, late = confirmed("o-2"), confirmed("o-2")
    await collection.insert_one({"_id": "o-2", **outbox_fields([sent])})
    relay.notify("o-2", [sent])
    assert await received(queue, 1) == [sent]
    await eventually(lambda: none_unannounced(collection))
    await swept_past(relay, collection)
    await collection.update_one(
        {"_id": "o-2"}, merge_updates({"$set": {"status": "X"}}, outbox_append([late]))
    )

    assert await received(queue, 1) == [late]
    await eventually(lambda: none_unannounced(collection))
    await relay.stop()
    assert await queue.get(fail=False) is None


async def test_another_relays_confirms_keep_the_sweep_from_publishing_again(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """Two replicas sweep one collection: what one published, the other reads in the log."""
    queue = await listen(broker)
    collection = mongo_db["aggregates"]
    writer = OutboxRelay(broker, collection, OutboxSettings(poll_interval_s=0.1))
    await writer.start()
    events = [confirmed(f"o-5-{i}") for i in range(5)]
    await write_and_notify(collection, writer, events)
    assert len(await received(queue, 5)) == 5
    await writer.stop()  # records its confirms
    sweeps = REGISTRY.get_sample_value("outbox_events_relayed_total", {"path": "sweep"}) or 0

    other = OutboxRelay(broker, collection, OutboxSettings(poll_interval_s=0.1, grace_s=0))
    await other.start()
    await swept_past(other, collection)
    await other.stop()
    assert await queue.get(fail=False) is None
    assert REGISTRY.get_sample_value("outbox_events_relayed_total", {"path": "sweep"}) == sweeps


async def test_a_late_write_of_a_dead_writer_is_found_after_a_restart(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """A write stamped long before it became visible (a slow transaction), whose writer
    died before publishing: the sweep had already passed its time, and saved that point.
    A relay that starts trails `late_commit_s` behind the saved point: the write is read
    again once its stamp is `late_commit_s` old (here a second after the start), and
    published."""
    queue = await listen(broker)
    collection = mongo_db["aggregates"]
    first = OutboxRelay(broker, collection, OutboxSettings(poll_interval_s=0.1, grace_s=0))
    await first.start()
    await eventually(lambda: first.swept_through is not None)
    await first.stop()  # saves its point
    late = confirmed("o-6")
    stamped = datetime.now(UTC) - timedelta(seconds=20)
    await collection.insert_one({"_id": "o-6", **outbox_fields([late]), "outbox_at": stamped})

    settings = OutboxSettings(poll_interval_s=0.1, grace_s=0, late_commit_s=21)
    restarted = OutboxRelay(broker, collection, settings)
    await restarted.start()
    assert await received(queue, 1) == [late]
    await restarted.stop()


async def test_a_write_visible_after_the_sweep_passed_its_stamp_is_read_again_a_period_later(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """The same late write while the relay runs on: its trailing pass reads every document
    again `late_commit_s` after its stamp, when any write of that time has become visible."""
    queue = await listen(broker)
    collection = mongo_db["aggregates"]
    settings = OutboxSettings(poll_interval_s=0.1, grace_s=0, late_commit_s=1.5)
    relay = OutboxRelay(broker, collection, settings)
    await relay.start()
    stamped = datetime.now(UTC) - timedelta(seconds=0.5)
    await eventually(lambda: (relay.swept_through or stamped) > stamped, timeout_s=10)
    late = confirmed("o-7")
    await collection.insert_one({"_id": "o-7", **outbox_fields([late]), "outbox_at": stamped})

    assert await received(queue, 1) == [late]
    assert datetime.now(UTC) >= stamped + timedelta(seconds=1.5)
    await relay.stop()


async def test_documents_of_the_in_place_marking_version_are_adopted(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """Written by the version that set `sent_at` in each entry and flagged the document
    `outbox_pending`: the sent entry stays sent, the unsent one is published."""
    queue = await listen(broker)
    collection = mongo_db["aggregates"]
    await collection.create_index("outbox_pending")
    sent, unsent = confirmed("o-7"), confirmed("o-7")
    entries = [outbox_entry(sent), outbox_entry(unsent)]
    entries[0]["sent_at"], entries[1]["sent_at"] = datetime.now(UTC), None
    await collection.insert_one({"_id": "o-7", "outbox": entries, "outbox_pending": True})
    await collection.insert_one(
        {"_id": "o-8", "outbox": [{**outbox_entry(confirmed("o-8")), "sent_at": datetime.now(UTC)}]}
        | {"outbox_pending": False}
    )
    relay = OutboxRelay(broker, collection, OutboxSettings(poll_interval_s=0.1, grace_s=0))
    await relay.start()

    assert await received(queue, 1) == [unsent]
    await eventually(lambda: none_unannounced(collection))
    await relay.stop()
    assert await queue.get(fail=False) is None
    assert "outbox_pending_1" not in await collection.index_information()


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

    # Returned by the fast path, then by the sweeps that take it again.
    await eventually(
        lambda: (
            (REGISTRY.get_sample_value("messages_publish_failures_total", returned) or 0)
            >= before + 3
        )
    )
    assert await unannounced_events(collection) == [str(event.event_id)]

    channel = await broker.new_channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange_name("OrderRejected"))

    async def delivered() -> Envelope | None:
        message = await queue.get(fail=False, no_ack=True)
        return None if message is None else codec.decode(message.body)[0]

    assert await eventually(delivered) == event
    await eventually(lambda: none_unannounced(collection))
    await relay.stop()


async def test_retention_prunes_old_events_the_sweep_has_passed_and_keeps_the_rest(
    broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    collection = mongo_db["aggregates"]
    old, recent = confirmed("o-4"), confirmed("o-4")
    long_ago = datetime.now(UTC) - timedelta(days=40)
    entries = outbox_fields([old, recent])["outbox"]
    entries[0]["occurred_at"] = long_ago
    inbox = [
        {"event_id": "in-1", "applied_at": long_ago},
        {"event_id": "in-2", "applied_at": datetime.now(UTC)},
    ]
    await collection.insert_one({"_id": "o-4", "outbox": entries, "inbox": inbox})
    relay = OutboxRelay(broker, collection, OutboxSettings(retention_days=30))
    checkpoints = mongo_db["outbox_sweeps"]

    # No sweep has saved its point yet: every event may still be unsent, none is pruned.
    assert await relay.prune() == 1
    document = await collection.find_one({"_id": "o-4"})
    assert document is not None
    assert len(document["outbox"]) == 2
    assert [e["event_id"] for e in document["inbox"]] == ["in-2"]

    await checkpoints.insert_one({"_id": "aggregates", "through": long_ago + timedelta(days=1)})
    # A document appended to after the sweep's point may still hold an unsent old event.
    await collection.insert_one({"_id": "o-5", "outbox": entries, "outbox_at": datetime.now(UTC)})
    assert await relay.prune() == 1
    document = await collection.find_one({"_id": "o-4"})
    assert document is not None
    assert [e["event_id"] for e in document["outbox"]] == [str(recent.event_id)]
    appended = await collection.find_one({"_id": "o-5"})
    assert appended is not None
    assert len(appended["outbox"]) == 2


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
