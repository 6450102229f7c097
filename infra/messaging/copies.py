"""The one copy of a received AMQP message: for a delay tier or the dead-letter queue (the
consumer) and for a replay out of a dead-letter queue (infra/dlq/replay.py). Only the headers
differ (infra/messaging/story.py writes them)."""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage


def copy_of(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    """`message`, persistent, with `headers` in place of its own."""
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
        # Not copied: expiration (a per-message TTL could drop the copy in its queue) and
        # user_id (the broker rejects one that is not the publishing user).
    )
