"""The real notification handlers driven through in-memory fakes of their stores and channels."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from contracts.envelope import Envelope
from contracts.events import (
    CustomerRegistered,
    Event,
    NotificationPreferenceChanged,
    OrderCancelled,
    OrderConfirmed,
    StockReplenished,
)
from contracts.topology import NOTIFICATION, SUBSCRIPTIONS, jittered_delays
from infra.kit import bind_handlers
from infra.messaging.errors import PermanentFailure, RetryLater
from infra.settings import AmqpSettings
from notification_service.adapters.metrics import MeteredChannel
from notification_service.domain.contacts import Contact, Preference
from notification_service.domain.model import Notification, NotificationStatus, notification_for
from notification_service.handlers import HANDLERS, Delivery
from notification_service.settings import NotificationSettings

pytestmark = pytest.mark.unit
SENT = NotificationStatus.SENT
CONFIRMED = OrderConfirmed(order_id="o-1", customer_id="c-1", total_cents=200)


class FakeNotificationStore:
    """The MongoDB store's contract: insert-or-load, a claim with a lease, then sent."""

    def __init__(self) -> None:
        self.records: dict[str, Notification] = {}
        self.leases: dict[str, datetime] = {}
        self.errors: dict[str, str] = {}

    async def record(
        self, notification: Notification, now: datetime, lease_s: float
    ) -> tuple[Notification, bool]:
        if notification.key in self.records:
            return self.records[notification.key], False
        self.records[notification.key] = replace(notification, attempts=notification.attempts + 1)
        self.leases[notification.key] = now + timedelta(seconds=lease_s)
        return self.records[notification.key], True

    async def claim(self, key: str, now: datetime, lease_s: float) -> bool:
        held = self.leases.get(key)
        if self.records[key].status is SENT or (held is not None and held > now):
            return False
        self.leases[key] = now + timedelta(seconds=lease_s)
        self.records[key] = replace(self.records[key], attempts=self.records[key].attempts + 1)
        return True

    async def release(self, key: str, error: str) -> None:
        self.leases.pop(key, None)
        self.errors[key] = error

    async def mark_sent(self, key: str, channel: str, at: datetime) -> None:
        self.leases.pop(key, None)
        self.records[key] = replace(self.records[key], status=SENT, channel=channel, sent_at=at)


class FakeContacts:
    def __init__(self) -> None:
        self.contacts: dict[str, Contact] = {}

    async def get(self, customer_id: str) -> Contact | None:
        return self.contacts.get(customer_id)

    async def register(self, customer_id: str, email: str, name: str) -> None:
        contact = self.contacts.get(customer_id, Contact(customer_id))
        self.contacts[customer_id] = contact.registered(email, name)

    async def prefer(self, customer_id: str, preference: Preference) -> None:
        contact = self.contacts.get(customer_id, Contact(customer_id))
        self.contacts[customer_id] = contact.prefer(preference)


class FakeChannel:
    def __init__(self, name: str, failures: int = 0) -> None:
        self.name = name
        self.failures_left = failures
        self.sent: list[tuple[Notification, Contact]] = []

    async def send(self, notification: Notification, contact: Contact) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise RetryLater(f"{self.name} unavailable")
        self.sent.append((notification, contact))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class World:
    def __init__(self, email_failures: int = 0) -> None:
        self.store, self.contacts, self.clock = FakeNotificationStore(), FakeContacts(), Clock()
        self.channels = {
            "log": FakeChannel("log"),
            "email": FakeChannel("email", email_failures),
            "webhook": FakeChannel("webhook"),
        }
        self.delivery = Delivery(self.store, self.channels, lease_s=60)
        self.handle = bind_handlers(HANDLERS, self)

    async def deliver(self, envelope: Envelope) -> None:
        event = SUBSCRIPTIONS_BY_NAME[envelope.event_type].model_validate(envelope.payload)
        await self.handle[type(event)](envelope, event)

    async def publish(self, event: Event, at: datetime | None = None) -> Envelope:
        envelope = Envelope.wrap(event, producer="test", occurred_at=at)
        await self.deliver(envelope)
        return envelope

    def sent(self, channel: str) -> list[str]:
        return [n.key for n, _ in self.channels[channel].sent]


SUBSCRIPTIONS_BY_NAME = {t.event_type: t for t in SUBSCRIPTIONS[NOTIFICATION]}


async def registered(world: World, customer_id: str = "c-1") -> None:
    await world.publish(CustomerRegistered(customer_id=customer_id, email="a@x.org", name="Ann"))


def test_every_subscribed_event_type_has_a_handler() -> None:
    assert set(World().handle) == set(SUBSCRIPTIONS[NOTIFICATION])


async def test_a_notification_goes_from_pending_to_sent_through_the_customers_channel() -> None:
    world = World()
    await registered(world)
    envelope = await world.publish(CONFIRMED)
    record = world.store.records["o-1:order_confirmed"]
    assert (record.status, record.channel, record.attempts) == (SENT, "email", 1)
    assert record.sent_at == world.clock.now
    assert record.event_id == str(envelope.event_id)
    [(notification, contact)] = world.channels["email"].sent
    assert (notification.key, contact.email) == ("o-1:order_confirmed", "a@x.org")


async def test_a_sent_notification_is_never_sent_again() -> None:
    world = World()
    await registered(world)
    envelope = await world.publish(CONFIRMED)
    await world.deliver(envelope)  # redelivered
    await world.publish(CONFIRMED)  # published twice
    world.clock.now += timedelta(hours=1)  # long after any claim expired
    await world.deliver(envelope)
    assert world.sent("email") == ["o-1:order_confirmed"]
    assert world.store.records["o-1:order_confirmed"].attempts == 1


async def a_first_email_that_fails() -> tuple[World, Envelope]:
    """A registered customer's OrderConfirmed whose first email send failed (RetryLater)."""
    world = World(email_failures=1)
    await registered(world)
    envelope = Envelope.wrap(CONFIRMED, producer="test")
    with pytest.raises(RetryLater):
        await world.deliver(envelope)
    return world, envelope


async def test_a_failed_send_stays_pending_and_the_redelivery_sends_it() -> None:
    world, envelope = await a_first_email_that_fails()
    record = world.store.records["o-1:order_confirmed"]
    assert (record.status, record.attempts) == (NotificationStatus.PENDING, 1)
    assert "email unavailable" in world.store.errors[record.key]
    await world.deliver(envelope)  # the retry, right away: the failure released the claim
    record = world.store.records["o-1:order_confirmed"]
    assert (record.status, record.attempts) == (SENT, 2)
    assert world.sent("email") == ["o-1:order_confirmed"]


async def test_a_copy_in_flight_waits_and_a_dead_claim_expires() -> None:
    world = World()
    await registered(world)
    envelope = Envelope.wrap(CONFIRMED, producer="test")
    # As if another copy were mid-send (or its process had died holding the claim).
    _, claimed = await world.store.record(
        notification_for(CONFIRMED, "email", world.clock()), world.clock(), 60
    )
    assert claimed
    assert not await world.store.claim("o-1:order_confirmed", world.clock(), 60)
    with pytest.raises(RetryLater, match="being sent"):
        await world.deliver(envelope)
    assert world.sent("email") == []
    world.clock.now += timedelta(seconds=61)
    await world.deliver(envelope)
    assert world.sent("email") == ["o-1:order_confirmed"]


async def test_an_unknown_customer_is_retried_later() -> None:
    world = World()
    with pytest.raises(RetryLater, match="not known yet"):
        await world.publish(CONFIRMED)
    assert world.store.records == {}


async def test_email_preferred_before_registration_is_retried_until_the_address_is_known() -> None:
    world = World()
    await world.publish(NotificationPreferenceChanged(customer_id="c-1", channel="email"))
    envelope = Envelope.wrap(CONFIRMED, producer="test")
    with pytest.raises(RetryLater, match="no email address"):
        await world.deliver(envelope)
    await registered(world)
    await world.deliver(envelope)
    assert world.sent("email") == ["o-1:order_confirmed"]


async def test_the_newest_preference_chooses_the_channel_whatever_the_arrival_order() -> None:
    world = World()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    webhook = NotificationPreferenceChanged(
        customer_id="c-1", channel="webhook", webhook_url="https://hooks.example/c-1"
    )
    await world.publish(webhook, at=t0 + timedelta(seconds=5))
    await world.publish(NotificationPreferenceChanged(customer_id="c-1", channel="log"), at=t0)
    await registered(world)  # registration after the preferences keeps them
    await world.publish(OrderCancelled(order_id="o-1", customer_id="c-1", reason="declined"))
    [(notification, contact)] = world.channels["webhook"].sent
    assert contact.preference is not None
    assert contact.preference.webhook_url == "https://hooks.example/c-1"
    assert world.store.records[notification.key].channel == "webhook"
    assert world.sent("log") == world.sent("email") == []


async def test_a_retry_after_a_preference_change_uses_the_new_channel() -> None:
    world, envelope = await a_first_email_that_fails()
    await world.publish(NotificationPreferenceChanged(customer_id="c-1", channel="log"))
    await world.deliver(envelope)
    assert world.sent("log") == ["o-1:order_confirmed"]
    assert world.store.records["o-1:order_confirmed"].channel == "log"


async def test_a_webhook_preference_without_a_url_is_dead_lettered() -> None:
    world = World()
    with pytest.raises(PermanentFailure, match="http"):
        await world.publish(NotificationPreferenceChanged(customer_id="c-1", channel="webhook"))
    assert world.contacts.contacts == {}


async def test_each_restock_is_told_once_to_the_operators_through_the_log() -> None:
    world = World()
    restock = StockReplenished(sku="SKU-1", quantity=10, available=15)
    envelope = await world.publish(restock)
    await world.deliver(envelope)  # redelivered
    await world.publish(restock)  # another restock of the same size
    first, second = world.sent("log")
    assert first == f"{envelope.event_id}:stock_replenished"
    assert second != first
    assert all(c.customer_id == "operator" for _, c in world.channels["log"].sent)


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
    retries run out, even when every delay is jittered to its shortest."""
    amqp = AmqpSettings()
    shortest_ladder_s = (
        sum(min(jittered_delays(d, amqp.retry_jitter)) for d in amqp.retry_delays_ms) / 1000
    )
    lease_s = NotificationSettings().send_lease_s
    assert lease_s == Delivery(FakeNotificationStore(), {}).lease_s
    assert lease_s < shortest_ladder_s / 1.5, (lease_s, shortest_ladder_s)
