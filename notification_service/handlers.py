"""Notification handlers: keep contacts current; tell each customer once how their order ended
(and the operators about restocks), through the customer's channel.

Send-once: record `pending` and claimed (a duplicate finds the existing record and claims it
if no unexpired claim holds it), send, mark `sent`. A failed send leaves it pending for the
redelivery; a sent one is never sent again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contracts.envelope import Envelope
from contracts.events import (
    CustomerRegistered,
    NotificationPreferenceChanged,
    OrderCancelled,
    OrderConfirmed,
    OrderRejected,
    PaymentRefunded,
    StockReplenished,
)
from infra.clock import Clock
from infra.kit import Registry
from infra.messaging.errors import PermanentFailure, RetryLater
from notification_service.domain.contacts import (
    OPERATOR,
    Contact,
    ContactIncomplete,
    InvalidPreference,
    Preference,
)
from notification_service.domain.model import (
    Notification,
    NotificationStatus,
    OrderOutcome,
    notification_for,
    operator_notification,
)
from notification_service.ports import Channel, ContactStore, NotificationStore


@dataclass(frozen=True)
class Delivery:
    notifications: NotificationStore
    channels: Mapping[str, Channel]
    # Longer than any channel's timeout: a claim outlives the send it covers, and a claim
    # left by a crashed process expires within the retry tiers.
    lease_s: float = 60.0

    async def deliver(self, draft: Notification, contact: Contact, *, clock: Clock) -> None:
        notification, claimed = await self.notifications.record(draft, clock(), self.lease_s)
        if notification.status is NotificationStatus.SENT:
            return  # a redelivery: already told
        channel = self.channels[draft.channel]
        if not claimed and not await self.notifications.claim(
            notification.key, clock(), self.lease_s
        ):
            # A duplicate of this event is being handled right now (copies can be in flight
            # together): come back later to find it sent, or its claim expired.
            raise RetryLater(f"notification {notification.key} is being sent by another delivery")
        try:
            await channel.send(notification, contact)
        except Exception as error:
            await self.notifications.release(notification.key, f"{type(error).__name__}: {error}")
            raise
        await self.notifications.mark_sent(notification.key, channel.name, clock())


async def on_order_outcome(
    envelope: Envelope,
    event: OrderOutcome,
    *,
    contacts: ContactStore,
    delivery: Delivery,
    clock: Clock,
) -> None:
    contact = await contacts.get(event.customer_id)
    if contact is None:
        # CustomerRegistered is published before any order exists: it is on its way.
        raise RetryLater(f"customer {event.customer_id} not known yet")
    try:
        channel = contact.route()
    except ContactIncomplete as error:
        raise RetryLater(str(error)) from error
    draft = notification_for(event, channel, clock(), str(envelope.event_id))
    await delivery.deliver(draft, contact, clock=clock)


async def on_stock_replenished(
    envelope: Envelope, event: StockReplenished, *, delivery: Delivery, clock: Clock
) -> None:
    draft = operator_notification(event, str(envelope.event_id), clock())
    await delivery.deliver(draft, OPERATOR, clock=clock)


async def on_customer_registered(
    envelope: Envelope, event: CustomerRegistered, *, contacts: ContactStore
) -> None:
    await contacts.register(event.customer_id, event.email, event.name)


async def on_preference_changed(
    envelope: Envelope, event: NotificationPreferenceChanged, *, contacts: ContactStore
) -> None:
    try:
        # When the customer chose, not when this arrived: that is what orders preferences.
        preference = Preference.from_event(event, envelope.occurred_at)
    except InvalidPreference as error:
        raise PermanentFailure(str(error)) from error
    await contacts.prefer(event.customer_id, preference)


# What this service consumes: one line per event (infra.kit checks it against
# contracts.topology.SUBSCRIPTIONS and injects each handler's keyword dependencies).
HANDLERS: Registry = {
    OrderConfirmed: on_order_outcome,
    OrderRejected: on_order_outcome,
    OrderCancelled: on_order_outcome,
    PaymentRefunded: on_order_outcome,
    StockReplenished: on_stock_replenished,
    CustomerRegistered: on_customer_registered,
    NotificationPreferenceChanged: on_preference_changed,
}
