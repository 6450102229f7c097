"""One delivery, start to end, for any transport: read the attempt header, decode, check the
event type, call the handler, let the retry policy decide, and have the transport carry the
decision out (a `Settlement`: ack, confirmed republish to a delay tier or the dead-letter
queue, requeue, reject).

Every delivery ends exactly once: acked, retried, dead-lettered or handed back. Whatever goes
wrong while carrying a decision out (a bug outside the handler, a failure header that cannot
be written) is caught once, around everything: a publish the broker did not take requeues the
delivery, anything else dead-letters it ("consumer error"), and if even that fails it is
rejected (the queue's own dead-letter exchange takes it). None is left unsettled, holding a
prefetch slot until the queue stalls. A handled delivery is acked outside that net: a failed
ack means redelivery (handlers are idempotent), never a dead letter.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from contracts.envelope import Envelope
from infra.messaging import codec, story
from infra.messaging.errors import InvalidMessage
from infra.messaging.headers import attempt_of
from infra.messaging.hooks import ConsumeHook, Delivery, Inbound, Scopes, overriding, scopes
from infra.messaging.retry_policy import (
    Ack,
    DeadLetter,
    Decision,
    Pick,
    Requeue,
    Retry,
    Tiers,
    decide,
    recover,
)

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, Any], Awaitable[None]]
REJECTED = "rejected"


@dataclass(frozen=True)
class Subscription:
    queue: str
    # The one event type this queue carries; anything else is dead-lettered, never handled.
    event_type: str
    handler: Handler
    # Per attempt, the delay variants (jitter) of its tier.
    retry_tiers: Tiers


class Settlement(Protocol):
    """What a transport does with one delivery. `ack`, `requeue` and `reject` never raise
    (a lost channel means the broker redelivers); `retry` and `dead_letter` return once the
    copy is confirmed and raise PublishFailed when it is not."""

    async def ack(self) -> None: ...

    async def requeue(self) -> None: ...

    async def reject(self) -> None: ...

    async def retry(self, delay_ms: int, headers: dict[str, Any]) -> None: ...

    async def dead_letter(self, headers: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Dispatch:
    """Dispatches the deliveries of `service`'s subscriptions."""

    service: str
    hooks: Sequence[ConsumeHook] = ()
    pick: Pick = random.choice
    # The hooks' scopes around a delivery and around an attempt, and the hooks told of a
    # decoded body: composed once from the hooks that do something there, as this runs for
    # every delivery.
    _around_delivery: Scopes = field(init=False, repr=False)
    _around_attempt: Scopes = field(init=False, repr=False)
    _on_decoded: tuple[ConsumeHook, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_around_delivery", scopes(self.hooks, "delivery"))
        object.__setattr__(self, "_around_attempt", scopes(self.hooks, "attempt"))
        object.__setattr__(self, "_on_decoded", overriding(self.hooks, "decoded"))

    async def __call__(
        self, subscription: Subscription, message: Inbound, settlement: Settlement
    ) -> str:
        """Handle and settle `message`; returns its outcome.

        The common path (a valid attempt header, a body of the queue's type, a handler that
        returns) is written out here, in this one coroutine: every coroutine between the
        consumer and the handler is resumed again at each of the handler's awaits, and this
        runs for every delivery. Failures leave it for the methods below."""
        delivery = Delivery(subscription.queue, message)
        with self._around_delivery(delivery):
            try:
                try:
                    attempt = attempt_of(message.headers)
                except InvalidMessage as invalid:
                    decision = decide(invalid, 1, subscription.retry_tiers)
                    outcome = await self._carry_out(decision, delivery, settlement, invalid, 1)
                else:
                    delivery.attempt = attempt
                    with self._around_attempt(delivery):
                        try:
                            envelope, event = self._decoded(subscription, delivery)
                            await subscription.handler(envelope, event)
                        except Exception as error:
                            outcome = await self._failed(subscription, delivery, settlement, error)
                        else:
                            outcome = Ack.outcome
                        delivery.outcome = outcome
            except Exception as error:
                outcome = await self._recover(delivery, settlement, error)
            else:
                await settlement.ack()
            delivery.outcome = outcome
        return outcome

    def _decoded(self, subscription: Subscription, delivery: Delivery) -> tuple[Envelope, Any]:
        """The body decoded, if it is of the queue's event type (else InvalidMessage)."""
        envelope, event = codec.decode(delivery.message.body)
        if envelope.event_type != subscription.event_type:
            # A wrong replay target or shovel: handling it would apply the wrong event.
            raise InvalidMessage(
                f"{envelope.event_type} delivered to {subscription.queue}, which carries "
                f"{subscription.event_type} only"
            )
        delivery.causation_id = envelope.causation_id
        for hook in self._on_decoded:
            hook.decoded(delivery)
        return envelope, event

    async def _failed(
        self,
        subscription: Subscription,
        delivery: Delivery,
        settlement: Settlement,
        failure: Exception,
    ) -> str:
        """Decoding or the handler failed: tell the hooks, then carry out what the retry
        policy decides (within the attempt's scopes)."""
        for hook in self.hooks:
            hook.failed(delivery, failure)
        attempt = delivery.attempt or 1
        decision = decide(failure, attempt, subscription.retry_tiers, self.pick)
        return await self._carry_out(decision, delivery, settlement, failure, attempt)

    async def _recover(self, delivery: Delivery, settlement: Settlement, error: Exception) -> str:
        """Carrying out a decision raised `error`: requeue, or dead-letter as a consumer
        error."""
        fallback = recover(error)
        message_id = delivery.message.message_id
        if isinstance(fallback, Requeue):
            log.warning("requeueing %s: retry/dead-letter publish failed", message_id)
            await settlement.requeue()
            return fallback.outcome
        log.exception("unexpected failure consuming %s", message_id, exc_info=error)
        return await self._dead_letter_unexpected(delivery, settlement, error, fallback)

    async def _dead_letter_unexpected(
        self, delivery: Delivery, settlement: Settlement, error: Exception, fallback: DeadLetter
    ) -> str:
        try:
            await self._carry_out(fallback, delivery, settlement, error, 1)
        except Exception:
            log.exception("rejecting %s: dead-letter publish failed", delivery.message.message_id)
            await settlement.reject()
            return REJECTED
        await settlement.ack()
        return fallback.outcome

    async def _carry_out(
        self,
        decision: Decision,
        delivery: Delivery,
        settlement: Settlement,
        error: Exception | None,
        attempt: int,
    ) -> str:
        """Publish the copy a decision calls for (the ack comes later); its outcome."""
        if isinstance(decision, Ack) or error is None:
            return Ack.outcome
        message, queue = delivery.message, delivery.queue
        if isinstance(decision, Retry):
            log.warning(
                "attempt %d of %s on %s failed (%s: %s); retrying in %d ms",
                attempt,
                message.message_id,
                queue,
                type(error).__name__,
                error,
                decision.delay_ms,
            )
        else:
            log.error(
                "dead-lettering %s from %s after %d attempt(s): %s: %s",
                message.message_id,
                queue,
                attempt,
                type(error).__name__,
                error,
            )
        failure = story.failure_story(
            message.headers,
            error,
            service=self.service,
            queue=queue,
            event_id=message.message_id,
            event_type=message.type,
            exchange=message.exchange,
        )
        if isinstance(decision, Retry):
            await settlement.retry(decision.delay_ms, story.for_retry(failure, attempt))
        else:
            await settlement.dead_letter(story.for_dead_letter(failure, attempt, decision.reason))
        return decision.outcome
