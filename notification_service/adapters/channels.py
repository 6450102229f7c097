"""The log channel: the message as a structured log line. Operators read their notifications
here, and it is where customers without another channel are told."""

from __future__ import annotations

import logging

from notification_service.domain.contacts import Contact
from notification_service.domain.model import Notification

log = logging.getLogger("notifications")


class LogChannel:
    name = "log"

    async def send(self, notification: Notification, contact: Contact) -> None:
        log.info(
            "notify %s about %s (%s): %s",
            contact.customer_id,
            notification.order_id or notification.key,
            notification.kind,
            notification.message,
        )
