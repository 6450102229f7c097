"""The outbox relay through a broker outage (a TCP proxy cut between it and the broker): it
pauses and says so once, keeps the backlog metrics moving, and publishes everything once the
broker is back."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase

from infra.messaging.broker import Broker
from infra.messaging.outbox import OutboxRelay, outbox_fields
from infra.messaging.outbox_confirmations import unannounced_events
from infra.settings import OutboxSettings
from tests.chaos.proxy import TcpProxy
from tests.integration.test_outbox import confirmed, listen, received
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration
EVENTS = 5


def gauge(name: str) -> float:
    """The relay's own series: the gauges are per outbox collection."""
    return REGISTRY.get_sample_value(name, {"collection": "aggregates"}) or 0.0


async def proxied_broker(amqp_url: str, name: str) -> tuple[TcpProxy, Broker]:
    """A broker connection through a TCP proxy of its own, which the test can cut."""
    parts = urlsplit(amqp_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.start()}"
    proxied = Broker(urlunsplit(parts._replace(netloc=netloc)), name)
    await proxied.connect()
    return proxy, proxied


async def test_relay_pauses_through_an_outage_logs_it_once_and_catches_up(
    amqp_url: str,
    broker: Broker,
    mongo_db: AsyncDatabase[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy, proxied = await proxied_broker(amqp_url, "itest-outage")
    queue = await listen(broker)  # on a direct connection: the listener sees no outage
    collection = mongo_db["aggregates"]
    relay = OutboxRelay(
        proxied, collection, OutboxSettings(poll_interval_s=0.2, grace_s=0, max_backoff_s=1)
    )
    await relay.start()
    events = [confirmed(f"o-{i}") for i in range(EVENTS)]
    try:
        with caplog.at_level(logging.WARNING):
            proxy.cut()
            await eventually(lambda: not proxied.is_connected)
            for index, event in enumerate(events):
                await collection.insert_one({"_id": f"o-{index}", **outbox_fields([event])})
                relay.notify(f"o-{index}", [event])
            # Paused, the sweeps still read the backlog: the metrics keep moving.
            await eventually(lambda: gauge("outbox_backlog_events") == EVENTS)
            age = gauge("outbox_oldest_event_age_seconds")
            await eventually(lambda: gauge("outbox_oldest_event_age_seconds") > age + 1)
            assert len(await unannounced_events(collection)) == EVENTS
            proxy.restore()
            assert sorted(e.event_id for e in await received(queue, EVENTS)) == sorted(
                e.event_id for e in events
            )
            await eventually(lambda: gauge("outbox_backlog_events") == 0)
    finally:
        await relay.stop()
        await proxied.close()
        proxy.stop()
    outage_lines = [r.getMessage() for r in caplog.records if r.name == "infra.messaging.outage"]
    assert len(outage_lines) == 2, outage_lines
    assert outage_lines[0].startswith("broker unreachable: outbox relay paused")
    assert outage_lines[1].startswith("broker reachable again after")
    # No line per event and per sweep (there were thousands in a 70 s outage).
    assert not [r for r in caplog.records if r.name == "infra.messaging.outbox"]


async def test_a_late_write_the_trailing_pass_meets_in_an_outage_is_published_after_it(
    amqp_url: str, broker: Broker, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    """A write that became visible after the sweep passed its stamp, found by the trailing
    pass while the broker is away: that pass moves on, so the sweep's own point goes back to
    the write, and it is published once the broker is back."""
    proxy, proxied = await proxied_broker(amqp_url, "itest-late-outage")
    queue = await listen(broker)
    collection = mongo_db["aggregates"]
    late_commit_s = 1.0
    settings = OutboxSettings(
        poll_interval_s=0.1, grace_s=0, max_backoff_s=0.2, late_commit_s=late_commit_s
    )
    relay = OutboxRelay(proxied, collection, settings)
    await relay.start()
    try:
        stamped = datetime.now(UTC) - timedelta(seconds=0.3)
        await eventually(lambda: (relay.swept_through or stamped) > stamped)
        proxy.cut()
        await eventually(lambda: not proxied.is_connected)
        late = confirmed("o-late")
        await collection.insert_one(
            {"_id": "o-late", **outbox_fields([late]), "outbox_at": stamped}
        )
        # The outage lasts until the trailing pass has gone past the stamp.
        await asyncio.sleep(late_commit_s + 1.0)
        proxy.restore()
        assert await received(queue, 1) == [late]
    finally:
        await relay.stop()
        await proxied.close()
        proxy.stop()
