"""Copies of a delivery for a retry tier or a DLQ, carrying the story of its failures."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage


def failure_headers(
    message: AbstractIncomingMessage, error: Exception, service: str, queue: str
) -> dict[str, Any]:
    """Keep the story of a failing message in its headers, readable in the management UI."""
    now = datetime.now(UTC).isoformat()
    headers = dict(message.headers or {})
    short_trace = "".join(traceback.format_exception(error, limit=4))[-2000:]
    headers.update(
        {
            "x-exception-class": type(error).__name__,
            "x-exception-message": str(error)[:1000],
            "x-traceback": short_trace,
            "x-service": service,
            "x-original-queue": queue,
            "x-last-failure-at": now,
            "x-event-id": message.message_id or "",
            "x-event-type": message.type or "",
        }
    )
    headers.setdefault("x-original-exchange", message.exchange or "")
    headers.setdefault("x-first-failure-at", now)
    return headers


def copy_of(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        type=message.type,
        app_id=message.app_id,
        timestamp=message.timestamp,
    )
