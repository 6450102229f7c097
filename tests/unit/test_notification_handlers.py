"""The real notification handlers on the in-memory bus, through fakes of their stores and
channels; the claim leases run on the bus's virtual clock. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from contracts.events import (
    CustomerRegistered,
    NotificationPreferenceChanged,
    OrderCancelled,
    OrderConfirmed,
    StockReplenished,
)
from contracts.topology import NOTIFICATION, SUBSCRIPTIONS, jittered_delays, queue_name
from infra.messaging.errors import RetryLater
from infra.settings import AmqpSettings
from infra.testing import InMemoryBus
from notification_service.adapters.metrics import MeteredChannel
from notification_service.domain.contacts import Contact
from notification_service.domain.model import NotificationStatus, notification_for
from notification_service.handlers import Delivery
from notification_service.settings import NotificationSettings
from tests.unit.fakes import FakeChannel, FakeNotificationStore
from tests.unit.services import Harness, NotificationDeps, notification_harness

pytestmark = pytest.mark.unit
SENT = NotificationStatus.SENT
CONFIRMED = OrderConfirmed(order_id="o-1", customer_id="c-1", total_cents=200)
KEY = "o-1:order_confirmed"


async def registered(notification: Harness[NotificationDeps], customer_id: str = "c-1") -> None:
    event = CustomerRegistered(customer_id=customer_id, email="a@x.org", name="Ann")
    await notification.receive(event)


def test_every_subscribed_event_type_has_a_queue() -> None:
    expected = {queue_name(NOTIFICATION, t.event_type) for t in SUBSCRIPTIONS[NOTIFICATION]}
    assert set(notification_harness().queues) == expected


async def test_a_notification_goes_from_pending_to_sent_through_the_customers_channel() -> None:
    notification = notification_harness()
    deps = notification.deps
    await registered(notification)
    envelope = await notification.receive(CONFIRMED)
    record = deps.notifications.records[KEY]
    assert (record.status, record.channel, record.attempts) == (SENT, "email", 1)
    assert record.sent_at == deps.clock()
    assert record.event_id == str(envelope.event_id)
    [(sent, contact)] = deps.channels["email"].sent
    assert (sent.key, contact.email) == (KEY, "a@x.org")
    assert notification.outcomes() == ["acked", "acked"]


async def test_a_sent_notification_is_never_sent_again() -> None:
    notification = notification_harness()
    await registered(notification)
    envelope = await notification.receive(CONFIRMED)
    await notification.redeliver(envelope)
    await notification.receive(CONFIRMED)  # published twice
    notification.bus.advance(3600)  # long after any claim expired
    await notification.redeliver(envelope)
    assert notification.deps.sent("email") == [KEY]
    assert notification.deps.notifications.records[KEY].attempts == 1
    assert notification.outcomes() == ["acked"] * 5


async def a_first_email_that_fails() -> Harness[NotificationDeps]:
    """A registered customer's OrderConfirmed whose first email send failed; its retry waits
    on the bus (the first tier: 1 s)."""
    notification = notification_harness(email_failures=1)
    await registered(notification)
    first = await notification.first_attempt(CONFIRMED)
    assert (first.outcome, first.error) == ("retried", "RetryLater: email unavailable")
    return notification


async def test_a_failed_send_stays_pending_and_the_retry_sends_it() -> None:
    notification = await a_first_email_that_fails()
    store = notification.deps.notifications
    record = store.records[KEY]
    assert (record.status, record.attempts) == (NotificationStatus.PENDING, 1)
    assert "email unavailable" in store.errors[record.key]
    # The retry comes 1 s later, well within the 60 s claim: it is the failure's release of
    # the claim that lets it send.
    retry = await notification.bus.deliver_next()
    assert retry is not None
    assert (retry.outcome, retry.attempt) == ("acked", 2)
    record = store.records[KEY]
    assert (record.status, record.attempts) == (SENT, 2)
    assert record.sent_at is not None
    assert record.sent_at - record.created_at == timedelta(seconds=1)
    assert notification.deps.sent("email") == [KEY]


async def test_a_copy_in_flight_waits_and_a_dead_claim_expires_before_the_last_retry() -> None:
    """Another copy holds the claim (mid-send, or its process died holding it): this one is
    retried until the claim expires. On the virtual clock the lease meets the real retry
    tiers, each jittered to its shortest: the claim must expire before they run out."""
    notification = notification_harness(InMemoryBus(pick=min))
    deps = notification.deps
    await registered(notification)
    lease_s = deps.delivery.lease_s
    assert lease_s == NotificationSettings().send_lease_s
    _, claimed = await deps.notifications.record(
        notification_for(CONFIRMED, "email", deps.clock()), deps.clock(), lease_s
    )
    assert claimed
    assert not await deps.notifications.claim(KEY, deps.clock(), lease_s)
    claimed_at = deps.clock()
    first = await notification.first_attempt(CONFIRMED)
    assert first.outcome == "retried"
    assert first.error is not None
    assert "being sent" in first.error
    assert deps.sent("email") == []
    await notification.bus.drain()
    outcomes = [s.outcome for s in notification.bus.settled if s.event_type == "OrderConfirmed"]
    assert outcomes == ["retried"] * 4 + ["acked"]
    assert deps.sent("email") == [KEY]
    sent_at = deps.notifications.records[KEY].sent_at
    assert sent_at is not None
    assert sent_at - claimed_at > timedelta(seconds=lease_s)


async def test_an_unknown_customer_is_retried_then_dead_lettered() -> None:
    notification = notification_harness()
    await notification.receive(CONFIRMED)
    assert notification.outcomes() == ["retried"] * 4 + ["dead_lettered"]
    [letter] = notification.dead_letters(OrderConfirmed)
    assert letter.reason == "retries exhausted"
    assert letter.headers["x-exception-message"] == "customer c-1 not known yet"
    assert notification.deps.notifications.records == {}


async def test_email_preferred_before_registration_is_retried_until_the_address_is_known() -> None:
    notification = notification_harness()
    await notification.receive(NotificationPreferenceChanged(customer_id="c-1", channel="email"))
    first = await notification.first_attempt(CONFIRMED)
    assert first.outcome == "retried"
    assert first.error is not None
    assert "no email address" in first.error
    await registered(notification)  # delivered before the retry, which then sends
    assert notification.deps.sent("email") == [KEY]
    assert notification.outcomes() == ["acked", "retried", "acked", "acked"]


async def test_the_newest_preference_chooses_the_channel_whatever_the_arrival_order() -> None:
    notification = notification_harness()
    deps = notification.deps
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    webhook = NotificationPreferenceChanged(
        customer_id="c-1", channel="webhook", webhook_url="https://hooks.example/c-1"
    )
    await notification.receive(webhook, occurred_at=t0 + timedelta(seconds=5))
    log_preference = NotificationPreferenceChanged(customer_id="c-1", channel="log")
    await notification.receive(log_preference, occurred_at=t0)
    await registered(notification)  # registration after the preferences keeps them
    cancelled = OrderCancelled(order_id="o-1", customer_id="c-1", reason="declined")
    await notification.receive(cancelled)
    [(sent, contact)] = deps.channels["webhook"].sent
    assert contact.preference is not None
    assert contact.preference.webhook_url == "https://hooks.example/c-1"
    assert deps.notifications.records[sent.key].channel == "webhook"
    assert deps.sent("log") == deps.sent("email") == []


async def test_a_retry_after_a_preference_change_uses_the_new_channel() -> None:
    notification = await a_first_email_that_fails()
    # Delivered before the waiting retry, which then finds the new channel.
    await notification.receive(NotificationPreferenceChanged(customer_id="c-1", channel="log"))
    assert notification.deps.sent("log") == [KEY]
    assert notification.deps.sent("email") == []
    assert notification.deps.notifications.records[KEY].channel == "log"


async def test_a_webhook_preference_without_a_url_is_dead_lettered() -> None:
    notification = notification_harness()
    await notification.receive(NotificationPreferenceChanged(customer_id="c-1", channel="webhook"))
    assert notification.outcomes() == ["dead_lettered"]
    [letter] = notification.dead_letters(NotificationPreferenceChanged)
    assert letter.reason == "permanent failure"
    assert "http" in letter.headers["x-exception-message"]
    assert notification.deps.contacts.contacts == {}


async def test_each_restock_is_told_once_to_the_operators_through_the_log() -> None:
    notification = notification_harness()
    deps = notification.deps
    restock = StockReplenished(sku="SKU-1", quantity=10, available=15)
    envelope = await notification.receive(restock)
    await notification.redeliver(envelope)
    await notification.receive(restock)  # another restock of the same size
    first, second = deps.sent("log")
    assert first == f"{envelope.event_id}:stock_replenished"
    assert second != first
    assert all(c.customer_id == "operator" for _, c in deps.channels["log"].sent)
    assert notification.outcomes() == ["acked"] * 3


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_metered_channel_counts_sends_by_kind_and_failures_by_channel() -> None:
    channel = MeteredChannel(FakeChannel("metered-test", failures=1))
    notification = notification_for(CONFIRMED, "metered-test", datetime.now(UTC))
    sent_labels = {"channel": "metered-test", "kind": "order_confirmed"}
    with pytest.raises(RetryLater):
        await channel.send(notification, Contact("c-1"))
    await channel.send(notification, Contact("c-1"))
    assert sample("notifications_sent_total", sent_labels) == 1
    assert sample("notification_send_failures_total", {"channel": "metered-test"}) == 1


def test_a_claim_left_by_a_crashed_process_expires_before_the_last_retry() -> None:
    """A process killed between recording a notification (born claimed) and marking it sent
    leaves the claim; the redelivery retries until it expires. It must expire before the
    retries run out, even when every delay is jittered to its shortest, with a margin (the
    harness test above shows it expiring in time)."""
    amqp = AmqpSettings()
    shortest_ladder_s = (
        sum(min(jittered_delays(d, amqp.retry_jitter)) for d in amqp.retry_delays_ms) / 1000
    )
    lease_s = NotificationSettings().send_lease_s
    assert lease_s == Delivery(FakeNotificationStore(), {}).lease_s
    assert lease_s < shortest_ladder_s / 1.5, (lease_s, shortest_ladder_s)
