"""Delivery channels. `log` writes the message as a structured log line."""

from __future__ import annotations

import logging

from notification_service.domain.model import Notification

log = logging.getLogger("notifications")


class LogChannel:
    name = "log"

    async def send(self, notification: Notification) -> None:
        log.info(
            "notify customer %s about order %s (%s): %s",
            notification.customer_id,
            notification.order_id,
            notification.kind,
            notification.message,
        )
