"""Prometheus metrics of the notification channels (default registry: one process, one
service). Label values are bounded: channel and notification kind names."""

from __future__ import annotations

from prometheus_client import Counter

from notification_service.domain.contacts import Contact
from notification_service.domain.model import Notification
from notification_service.handlers import Channel

NOTIFICATIONS_SENT = Counter(
    "notifications_sent_total",
    "Notifications a channel accepted, by channel and kind.",
    ["channel", "kind"],
)
NOTIFICATION_SEND_FAILURES = Counter(
    "notification_send_failures_total",
    "Sends that failed (retried or dead-lettered by the consumer), by channel.",
    ["channel"],
)


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
