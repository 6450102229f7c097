"""A channel that counts its sends and failures (notification_service.metrics)."""

from __future__ import annotations

from notification_service.domain.contacts import Contact
from notification_service.domain.model import Notification
from notification_service.metrics import NOTIFICATION_SEND_FAILURES, NOTIFICATIONS_SENT
from notification_service.ports import Channel


class MeteredChannel:
    """Counts the sends and failures of the channel it wraps, under that channel's name."""

    def __init__(self, inner: Channel) -> None:
        self._inner = inner
        self.name = inner.name

    async def send(self, notification: Notification, contact: Contact) -> None:
        try:
            await self._inner.send(notification, contact)
        except Exception:
            NOTIFICATION_SEND_FAILURES.labels(self.name).inc()
            raise
        NOTIFICATIONS_SENT.labels(self.name, notification.kind).inc()
