"""Carries out dispatch's decision for one JetStream delivery (see dispatch.Settlement and
infra.messaging.jetstream.subscriber for the design)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg

from contracts.topology import DEAD_LETTER_EXCHANGE, retry_tier_name
from infra.messaging import story
from infra.messaging.errors import InvalidMessage, PermanentFailure, PublishFailed
from infra.messaging.headers import attempt_of
from infra.messaging.hooks import Inbound
from infra.messaging.jetstream import wire
from infra.messaging.jetstream.bus import JetStreamBus, now_ms

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 5.0
# A delivery handed back (its retry or dead-letter copy was not stored) comes again after this.
REQUEUE_DELAY_S = 1.0
DELIVERY_LIMIT = "delivery limit"


class DeliveryLimitExceeded(PermanentFailure):
    """Delivered more often than the limit without being settled: it kills its consumer."""


@dataclass
class JetStreamSettlement:
    """Settles one delivery of `queue` on JetStream (see dispatch.Settlement)."""

    bus: JetStreamBus
    service: str
    queue: str
    message: Msg
    # The server answered this delivery's ack (the subscriber acks a repeat of it again).
    acked: bool = field(default=False, init=False)

    async def ack(self) -> None:
        try:
            await self.message.ack_sync(timeout=ACK_TIMEOUT_S)
        except Exception:  # delivered again after the ack wait; the effect is stored already
            log.warning("ack on %s failed; it will be redelivered", self.queue, exc_info=True)
        else:
            self.acked = True

    async def requeue(self) -> None:
        try:
            await self.message.nak(delay=REQUEUE_DELAY_S)
        except Exception:  # the server delivers it again after the ack wait by itself
            log.debug("nak failed", exc_info=True)

    async def reject(self) -> None:
        # Even its dead letter could not be stored. JetStream has no dead-letter exchange of
        # its own: it comes back, and past the delivery limit it is dead-lettered again.
        await self.requeue()

    async def retry(self, delay_ms: int, headers: dict[str, Any]) -> None:
        names = self.bus.names
        label = (retry_tier_name(self.service, delay_ms), self.queue)
        due = str(now_ms() + delay_ms)
        subject, stream = names.retry_subject(self.queue), names.retries_stream
        await self._send("retry", subject, stream, headers, label, due)

    async def dead_letter(self, headers: dict[str, Any]) -> None:
        names = self.bus.names
        label = (DEAD_LETTER_EXCHANGE, self.queue)
        queue = self.queue
        subject, stream = names.dead_letter_subject(queue), names.dead_letter_stream(queue)
        await self._send("dlq", subject, stream, headers, label, None)

    async def dead_letter_poison(self, message: Inbound, delivered: int, limit: int) -> None:
        """Dead-letter this delivery past the delivery limit, unhandled, with the story."""
        error = DeliveryLimitExceeded(
            f"delivered {delivered} times without being settled (limit {limit})"
        )
        log.error("dead-lettering %s from %s: %s", message.message_id, self.queue, error)
        failure = story.failure_story(
            message.headers,
            error,
            service=self.service,
            queue=self.queue,
            event_id=message.message_id,
            event_type=message.type,
            exchange=message.exchange,
        )
        try:
            attempt = attempt_of(message.headers)
        except InvalidMessage:
            attempt = 1
        try:
            await self.dead_letter(story.for_dead_letter(failure, attempt, DELIVERY_LIMIT))
        except PublishFailed:
            await self.requeue()
            return
        await self.ack()

    async def _send(
        self,
        kind: str,
        subject: str,
        stream: str,
        headers: dict[str, Any],
        label: tuple[str, str],
        due: str | None,
    ) -> None:
        """A copy of the delivery with `headers`, its properties kept (a new due time)."""
        properties: dict[str, str | None] = {**wire.properties(self.message.headers)}
        properties[wire.DUE_AT] = due
        source = self.message.metadata
        msg_id = f"{kind}-{self.queue}-{source.stream}-{source.sequence.stream}"
        body = self.message.data
        await self.bus.send(
            subject, body, headers, properties, msg_id=msg_id, stream=stream, label=label
        )
