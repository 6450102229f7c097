"""What an exception out of a confirmed publish means, and what the broker does about it.

Pure: it only reads the exception. `Broker` acts on the answer (replaces its channel, raises
`PublishFailed`); the unit tests give it the exceptions aio-pika and aiormq really raise.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

import aiormq

# Raised when the channel or connection under a publish fails. ChannelInvalidStateError is not
# an AMQPError: a robust channel raises it while it is closed and reopening.
CHANNEL_ERRORS = (
    TimeoutError,
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
)


class Remedy(enum.Enum):
    NONE = "none"
    REPLACE_CHANNEL = "replace the channel"  # it nacks: a new one finds the queue's new leader
    REPLACE_IF_CLOSED = "replace the channel if it is closed"  # nothing else reopens it
    REPLACE_STUCK = "replace the channel if the connection is alive"  # no confirm came in time


@dataclass(frozen=True)
class NotConfirmed:
    reason: str
    kind: str  # PublishFailed.kind: "returned", "nacked" or "connection"
    remedy: Remedy


def not_confirmed(
    error: BaseException, exchange: str, routing_key: str, *, being_cancelled: bool
) -> NotConfirmed | None:
    """Why a publish to `exchange` was not confirmed, or None if `error` is not a publish
    failure (a cancellation of the publishing task itself, a bug) and must propagate as is.
    `being_cancelled`: the publishing task has a cancellation request of its own."""
    if isinstance(error, aiormq.exceptions.PublishError):
        reason = f"unroutable: exchange {exchange!r} key {routing_key!r}"
        return NotConfirmed(reason, "returned", Remedy.NONE)
    if isinstance(error, aiormq.exceptions.DeliveryError):
        reason = f"broker refused the message: {error}"
        return NotConfirmed(reason, "nacked", Remedy.REPLACE_CHANNEL)
    if isinstance(error, asyncio.CancelledError):
        if being_cancelled:
            return None
        # Not a cancellation of this task: the channel closed under the publish (its
        # connection lost) and aiormq cancelled the pending confirm. Left as is, that
        # CancelledError silently ended the outbox relay's task (cluster tests).
        return NotConfirmed("confirm lost with the channel", "connection", Remedy.NONE)
    if type(error) is Exception:
        # aio-pika closes a channel without a reason, and aiormq then fails its pending
        # confirms with a bare Exception: here when the broker replaced a stuck channel under
        # concurrent publishes. A consumer's retry took it for a handler error and
        # dead-lettered a valid message on its first attempt (cluster tests).
        lost = "confirm lost with the channel"
        return NotConfirmed(lost, "connection", Remedy.REPLACE_IF_CLOSED)
    if isinstance(error, TimeoutError):
        return NotConfirmed(f"no confirm: {error!r}", "connection", Remedy.REPLACE_STUCK)
    if isinstance(error, CHANNEL_ERRORS):
        return NotConfirmed(f"no confirm: {error!r}", "connection", Remedy.REPLACE_IF_CLOSED)
    return None
