"""Notification handlers: keep contacts current; tell each customer once how their order ended
(and the operators about restocks), through the customer's channel.

Send-once: record `pending` and claimed (a duplicate finds the existing record and claims it
if no unexpired claim holds it), send, mark `sent`. A failed send leaves it pending for the
redelivery; a sent one is never sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

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


class NotificationStore(Protocol):
    async def record(
        self, notification: Notification, now: datetime, lease_s: float
    ) -> tuple[Notification, bool]:
        """Insert it pending and claimed by the caller for `lease_s`, returning (it, True); if
        one with its key exists, return (that one, False): not claimed."""
        ...

    async def claim(self, key: str, now: datetime, lease_s: float) -> bool:
        """Take the right to send a pending notification for `lease_s`; False if it is sent
        or another delivery holds an unexpired claim."""
        ...

    async def release(self, key: str, error: str) -> None: ...

    async def mark_sent(self, key: str, channel: str, at: datetime) -> None: ...


class ContactStore(Protocol):
    async def get(self, customer_id: str) -> Contact | None: ...

    async def register(self, customer_id: str, email: str, name: str) -> None: ...

    async def prefer(self, customer_id: str, preference: Preference) -> None:
        """Store it unless the contact holds a preference at least as recent."""
        ...


class Channel(Protocol):
    name: str

    async def send(self, notification: Notification, contact: Contact) -> None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Delivery:
    notifications: NotificationStore
    channels: Mapping[str, Channel]
    # Longer than any channel's timeout: a claim outlives the send it covers, and a claim
    # left by a crashed process expires within the retry tiers.
    lease_s: float = 60.0
    clock: Callable[[], datetime] = field(default=_utc_now)

    async def deliver(self, draft: Notification, contact: Contact) -> None:
        notification, claimed = await self.notifications.record(draft, self.clock(), self.lease_s)
        if notification.status is NotificationStatus.SENT:
            return  # a redelivery: already told
        channel = self.channels[draft.channel]
        if not claimed and not await self.notifications.claim(
            notification.key, self.clock(), self.lease_s
        ):
            # A duplicate of this event is being handled right now (copies can be in flight
            # together): come back later to find it sent, or its claim expired.
            raise RetryLater(f"notification {notification.key} is being sent by another delivery")
        try:
            await channel.send(notification, contact)
        except Exception as error:
            await self.notifications.release(notification.key, f"{type(error).__name__}: {error}")
            raise
        await self.notifications.mark_sent(notification.key, channel.name, self.clock())


async def on_order_outcome(
    envelope: Envelope, event: OrderOutcome, contacts: ContactStore, delivery: Delivery
) -> None:
    contact = await contacts.get(event.customer_id)
    if contact is None:
        # CustomerRegistered is published before any order exists: it is on its way.
        raise RetryLater(f"customer {event.customer_id} not known yet")
    try:
        channel = contact.route()
    except ContactIncomplete as error:
        raise RetryLater(str(error)) from error
    draft = notification_for(event, channel, delivery.clock(), str(envelope.event_id))
    await delivery.deliver(draft, contact)


async def on_stock_replenished(
    envelope: Envelope, event: StockReplenished, delivery: Delivery
) -> None:
    draft = operator_notification(event, str(envelope.event_id), delivery.clock())
    await delivery.deliver(draft, OPERATOR)


async def on_customer_registered(
    envelope: Envelope, event: CustomerRegistered, contacts: ContactStore
) -> None:
    await contacts.register(event.customer_id, event.email, event.name)


async def on_preference_changed(
    envelope: Envelope, event: NotificationPreferenceChanged, contacts: ContactStore
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
