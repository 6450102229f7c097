"""The moves, over AMQP: replay and purge.

Replay, per message: basic.get without ack -> publish a copy to the target queue through the
default exchange (persistent, mandatory, publisher-confirmed) -> only then ack the original.
If the process dies anywhere in between, the broker requeues the unacked original: at worst
the message exists twice (consumers are idempotent), never zero times. Messages that do not
match the filter stay unacked until the end and are then nacked back, so the scan never sees
them twice; the scan is also bounded by the depth at the start, so letters that fail again
and come back during the replay are not replayed in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

from infra.cli import ProgressBar
from infra.dlq.connection import DlqError, redacted
from infra.dlq.letters import Filter, Letter
from infra.messaging.copies import copy_of

CONNECT_TIMEOUT_S = 15.0
PUBLISH_TIMEOUT_S = 15.0
# What a dropped connection or closed channel raises (ChannelInvalidStateError is not an
# AMQPError); mapped to a DlqError so the operator gets a sentence, not a traceback.
_LINK_ERRORS = (
    TimeoutError,
    ConnectionError,
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
)


@dataclass(frozen=True)
class Moved:
    event_id: str
    event_type: str
    target: str


@dataclass
class ReplayResult:
    moved: list[Moved] = field(default_factory=list)
    scanned: int = 0

    @property
    def left(self) -> int:
        return self.scanned - len(self.moved)


@contextlib.asynccontextmanager
async def amqp(url: str) -> AsyncIterator[AbstractConnection]:
    """A plain (not robust) connection: if it drops, the broker requeues what we hold, and
    the operator re-runs; reconnecting behind their back would only blur what happened."""
    where = redacted(url)
    try:
        connection = await asyncio.wait_for(aio_pika.connect(url), CONNECT_TIMEOUT_S)
    except aiormq.exceptions.ProbableAuthenticationError as error:
        raise DlqError(f"RabbitMQ refused the AMQP login at {where} (see --amqp-url)") from error
    except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as error:
        raise DlqError(
            f"cannot reach RabbitMQ over AMQP at {where}: {error!r} (see --amqp-url / AMQP_URL)"
        ) from error
    try:
        yield connection
    finally:
        # Best effort: on a broken link there is nothing left to close, and an error here
        # would hide the one that explains what happened.
        with contextlib.suppress(Exception):
            await connection.close()


async def replay(
    url: str,
    source: str,
    filters: list[Filter],
    limit: int | None,
    to: str | None,
    progress_enabled: bool,
) -> ReplayResult:
    async with amqp(url) as connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await _existing_queue(channel, source)
        budget = queue.declaration_result.message_count or 0
        progress = ProgressBar(budget, progress_enabled)  # a --limit may end it early
        result = ReplayResult()
        held: list[AbstractIncomingMessage] = []  # unacked; all nacked back at the end
        try:
            while result.scanned < budget and (limit is None or len(result.moved) < limit):
                message = await queue.get(no_ack=False, fail=False, timeout=PUBLISH_TIMEOUT_S)
                if message is None:
                    break
                result.scanned += 1
                held.append(message)
                letter = Letter.from_amqp(message)
                if not letter.matches(filters):
                    progress.update(result.scanned, _moved(result))
                    continue
                target = to or letter.target(source)
                if target is None:
                    raise DlqError(
                        f"cannot tell which queue message {letter.event_id or '?'} came from"
                        f" (no x-original-queue or x-death header, and {source!r} does not end"
                        " in .dlq); pass --to QUEUE"
                    )
                await _publish_copy(channel, letter, message, source, target)
                await message.ack()  # the copy is confirmed: now the original may go
                held.pop()
                result.moved.append(Moved(letter.event_id, letter.event_type, target))
                progress.update(result.scanned, _moved(result))
        except DlqError as error:
            raise DlqError(
                f"replay stopped after moving {len(result.moved)} message(s): {error}"
            ) from error
        except _LINK_ERRORS as error:
            # The broker requeues whatever this connection held; the message whose copy was
            # confirmed but whose ack did not arrive now exists twice, which is harmless.
            raise DlqError(
                f"lost the AMQP connection after moving {len(result.moved)} message(s)"
                f" ({error!r}); the rest stay in {source!r}, re-run to continue"
            ) from error
        finally:
            progress.close(result.scanned, _moved(result))
            await _requeue(held)
        return result


async def purge(url: str, source: str) -> int:
    """Delete the ready messages of `source`; returns how many."""
    async with amqp(url) as connection:
        channel = await connection.channel()
        queue = await _existing_queue(channel, source)
        purged = await queue.purge()
        return int(purged.message_count or 0)


async def _existing_queue(channel: AbstractChannel, name: str) -> AbstractQueue:
    # Passive: never create a queue by accident, and get the exact ready count (the
    # management API's figure lags by up to its statistics interval).
    try:
        return await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity as error:
        raise DlqError(f"no queue named {name!r}") from error


async def _publish_copy(
    channel: AbstractChannel,
    letter: Letter,
    message: AbstractIncomingMessage,
    source: str,
    target: str,
) -> None:
    copy = copy_of(message, letter.replay_headers(source, datetime.now(UTC)))
    what = f"the copy of {letter.event_id or 'a message'} for {target!r}"
    try:
        await channel.default_exchange.publish(
            copy, routing_key=target, mandatory=True, timeout=PUBLISH_TIMEOUT_S
        )
    except aiormq.exceptions.PublishError as error:
        raise DlqError(
            f"{what} was returned as unroutable: no queue named {target!r}; the original"
            f" stays in {source!r} (pass --to QUEUE to send it elsewhere)"
        ) from error
    except aiormq.exceptions.DeliveryError as error:
        raise DlqError(
            f"the broker refused {what} ({error}); the original stays in {source!r}"
        ) from error
    except _LINK_ERRORS as error:
        raise DlqError(
            f"no publisher confirm for {what} ({error!r}); the original stays in {source!r}"
            " (the copy may exist as well: a duplicate, which consumers ignore)"
        ) from error


async def _requeue(held: list[AbstractIncomingMessage]) -> None:
    """Nack in delivery order so the kept letters keep their relative order."""
    for message in held:
        try:
            await message.nack(requeue=True)
        except Exception:  # the channel is gone: the broker requeues them by itself
            return


def _moved(result: ReplayResult) -> str:
    return f"scanned, {len(result.moved)} moved"
