"""What becomes of a delivery, decided without I/O: ack, retry after a delay, or dead-letter.

- no error: ack.
- InvalidMessage / PermanentFailure (a bad header, an undecodable body, an event type the
  queue does not carry, a handler saying retrying cannot help) and RecursionError (a payload
  nested too deep for some code path fails the same way again): dead-lettered at once.
- anything else: retried after one of the attempt's jittered delays (tiers[attempt - 1]);
  after the last tier, dead-lettered.

Carrying a decision out can fail too; `recover` says what then: a retry or dead-letter publish
the broker did not take hands the delivery back to its queue, anything else dead-letters it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from infra.messaging.errors import PermanentFailure, PublishFailed

PERMANENT_FAILURE = "permanent failure"
RETRIES_EXHAUSTED = "retries exhausted"
CONSUMER_ERROR = "consumer error"

# Per attempt, the delay variants (ms) of its tier.
Tiers = tuple[tuple[int, ...], ...]
Pick = Callable[[Sequence[int]], int]


@dataclass(frozen=True)
class Ack:
    outcome: ClassVar[str] = "acked"


@dataclass(frozen=True)
class Retry:
    delay_ms: int
    outcome: ClassVar[str] = "retried"


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    outcome: ClassVar[str] = "dead_lettered"


@dataclass(frozen=True)
class Requeue:
    """Back to the queue it came from, as it is (the broker delivers it again)."""

    outcome: ClassVar[str] = "requeued"


Decision = Ack | Retry | DeadLetter


def decide(
    error: BaseException | None, attempt: int, tiers: Tiers, pick: Pick = random.choice
) -> Decision:
    """The end of attempt number `attempt` (1-based) that failed with `error` (None: it
    succeeded). `pick` chooses among a tier's variants; tests pass a deterministic one."""
    if error is None:
        return Ack()
    # InvalidMessage is a PermanentFailure.
    if isinstance(error, PermanentFailure | RecursionError):
        return DeadLetter(PERMANENT_FAILURE)
    if attempt > len(tiers):
        return DeadLetter(RETRIES_EXHAUSTED)
    return Retry(pick(tiers[attempt - 1]))


def recover(error: BaseException) -> Requeue | DeadLetter:
    """Carrying out a decision raised `error`. A PublishFailed means the copy could not be
    parked in a retry tier or the dead-letter queue: the delivery goes back to its queue.
    Anything else (a bug outside the handler) would fail again: it is dead-lettered."""
    if isinstance(error, PublishFailed):
        return Requeue()
    return DeadLetter(CONSUMER_ERROR)
