"""Settling one delivery of a consumer group (see infra.messaging.dispatch.Settlement).

An entry stays in its group's pending list until `XACK`, so whatever happens before the ack (a
crash, a lost connection) leaves it there for another consumer to claim. A retry parks a copy
in the queue's schedule (one script: the copy and its due time together) and a dead letter adds
one to `<queue>.dlq`; either is confirmed before dispatch acks the original.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from contracts.topology import DEAD_LETTER_EXCHANGE, retry_tier_name
from infra.messaging.hooks import Inbound
from infra.messaging.redisbus.fields import to_fields, with_headers
from infra.messaging.redisbus.keys import Keys
from infra.messaging.redisbus.publisher import RedisPublisher

log = logging.getLogger(__name__)
REJECTED_REASON = "rejected"


@dataclass(frozen=True)
class GroupLink:
    """What settling a delivery of `queue` needs: the group, its keys and this consumer."""

    client: Redis
    publisher: RedisPublisher
    keys: Keys
    service: str
    queue: str
    consumer: str
    visibility_ms: int
    park: AsyncScript
    # Wakes the mover of this process, so a short delay is not overslept.
    parked: Callable[[], None]


@dataclass(frozen=True)
class StreamSettlement:
    """Settles one delivery (entry `entry_id` of `stream`) on Redis Streams (see
    dispatch.Settlement)."""

    link: GroupLink
    stream: str
    entry_id: bytes
    message: Inbound

    async def ack(self) -> None:
        link = self.link
        try:
            await link.client.xack(self.stream, link.queue, self.entry_id)
        except Exception:  # still pending: claimed again after the visibility timeout
            log.warning("ack of %s failed; it will be redelivered", self.message.message_id)

    async def requeue(self) -> None:
        # No nack in streams: mark it idle for the whole visibility timeout, so the next
        # sweep of any consumer of the group claims it at once.
        link = self.link
        try:
            await link.client.xclaim(
                self.stream,
                link.queue,
                link.consumer,
                min_idle_time=0,
                message_ids=[self.entry_id],
                idle=link.visibility_ms,
                justid=True,
            )
        except Exception:  # it stays pending and ages to the timeout by itself
            log.debug("requeue of %s failed", self.message.message_id, exc_info=True)

    async def reject(self) -> None:
        # RabbitMQ's queue-level dead-lettering: the copy as it came, with the reason only.
        headers = {**self.message.headers, "x-dead-letter-reason": REJECTED_REASON}
        try:
            await self.dead_letter(headers)
        except Exception:
            log.exception("reject of %s failed; left pending", self.message.message_id)
            return
        await self.ack()

    async def retry(self, delay_ms: int, headers: dict[str, Any]) -> None:
        link = self.link
        copy = with_headers(self.message, headers)
        tier = retry_tier_name(link.service, delay_ms)
        async with link.publisher.hooked(copy, tier, link.queue, copy.type or "") as outgoing:
            flat = [item for pair in to_fields(outgoing).items() for item in pair]
            keys = [link.keys.parked(link.queue), link.keys.schedule(link.queue)]
            await link.publisher.confirmed(link.park(keys=keys, args=[delay_ms, *flat]), copy)
        link.parked()

    async def dead_letter(self, headers: dict[str, Any]) -> None:
        link = self.link
        copy = with_headers(self.message, headers)
        exchange = DEAD_LETTER_EXCHANGE
        async with link.publisher.hooked(copy, exchange, link.queue, copy.type or "") as outgoing:
            await link.publisher.add(link.keys.dead_letters(link.queue), to_fields(outgoing), copy)
