"""Record one notification per order and kind, then send it once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from contracts.envelope import Envelope
from contracts.events import Event
from notification_service.domain.model import Notification, notification_for


class NotificationStore(Protocol):
    async def add(self, notification: Notification) -> bool: ...


class Channel(Protocol):
    name: str

    async def send(self, notification: Notification) -> None: ...


async def on_terminal_event(
    envelope: Envelope,
    event: Event,
    store: NotificationStore,
    channel: Channel,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    notification = notification_for(event, channel.name, now())
    # Recorded first: a redelivery finds the record and sends nothing twice.
    if await store.add(notification):
        await channel.send(notification)
