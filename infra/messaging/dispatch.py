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
from infra.messaging.hooks import ConsumeHook, Delivery, Inbound, entered, overriding
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
    # Per hook method, only the hooks that do something in it (run for every delivery).
    _around_delivery: tuple[ConsumeHook, ...] = field(init=False, repr=False)
    _around_attempt: tuple[ConsumeHook, ...] = field(init=False, repr=False)
    _on_decoded: tuple[ConsumeHook, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name, method in (
            ("_around_delivery", "delivery"),
            ("_around_attempt", "attempt"),
            ("_on_decoded", "decoded"),
        ):
            object.__setattr__(self, name, overriding(self.hooks, method))

    async def __call__(
        self, subscription: Subscription, message: Inbound, settlement: Settlement
    ) -> str:
        """Handle and settle `message`; returns its outcome. (The settling is written inline,
        not as a coroutine of its own: this runs for every delivery.)"""
        delivery = Delivery(subscription.queue, message)
        with entered(hook.delivery(delivery) for hook in self._around_delivery):
            try:
                outcome = await self._apply(subscription, delivery, settlement)
            except Exception as error:
                outcome = await self._recover(delivery, settlement, error)
            else:
                await settlement.ack()
            delivery.outcome = outcome
        return outcome

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

    async def _apply(
        self, subscription: Subscription, delivery: Delivery, settlement: Settlement
    ) -> str:
        tiers = subscription.retry_tiers
        try:
            attempt = attempt_of(delivery.message.headers)
        except InvalidMessage as invalid:
            decision = decide(invalid, 1, tiers)
            return await self._carry_out(decision, delivery, settlement, invalid, 1)
        delivery.attempt = attempt
        with entered(hook.attempt(delivery) for hook in self._around_attempt):
            failure = await self._handle(subscription, delivery)
            if failure is None:  # the common case, without a decision to carry out
                delivery.outcome = Ack.outcome
            else:
                decision = decide(failure, attempt, tiers, self.pick)
                delivery.outcome = await self._carry_out(
                    decision, delivery, settlement, failure, attempt
                )
            return delivery.outcome

    async def _handle(self, subscription: Subscription, delivery: Delivery) -> Exception | None:
        """Run the handler on the decoded body; the error that stopped it, if any."""
        try:
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
            await subscription.handler(envelope, event)
        except Exception as error:
            for hook in self.hooks:
                hook.failed(delivery, error)
            return error
        return None

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
