"""What an exception out of a confirmed publish means: the exceptions aio-pika and aiormq really
raise, built as they build them. Pure, no I/O."""

from __future__ import annotations

import asyncio

import aiormq
import pytest
from aiormq.abc import DeliveredMessage
from aiormq.base import FutureStore
from pamqp import commands as spec
from pamqp.header import ContentHeader

from infra.messaging.publish_errors import Remedy, not_confirmed

pytestmark = pytest.mark.unit


async def confirm_failed_by_a_reasonless_close() -> BaseException:
    """What a publish awaiting its confirm gets when aio-pika closes the channel: aiormq
    rejects the channel's pending futures with the close's reason, which is None."""
    store = FutureStore(asyncio.get_running_loop())
    confirmation = store.create_future()
    await store.reject_all(None)
    error = confirmation.exception()
    assert error is not None
    return error


def classify(error: BaseException, being_cancelled: bool = False) -> tuple[str, Remedy] | None:
    failure = not_confirmed(error, "events.x", "key", being_cancelled=being_cancelled)
    return None if failure is None else (failure.kind, failure.remedy)


async def test_a_confirm_failed_by_a_reasonless_close_is_lost_and_the_channel_replaced() -> None:
    error = await confirm_failed_by_a_reasonless_close()
    assert type(error) is Exception  # what made a consumer dead-letter a valid message
    failure = not_confirmed(error, "events.x", "", being_cancelled=False)
    assert failure is not None
    assert failure.reason == "confirm lost with the channel"
    assert (failure.kind, failure.remedy) == ("connection", Remedy.REPLACE_IF_CLOSED)


def test_a_returned_message_is_unroutable_and_keeps_the_channel() -> None:
    returned = DeliveredMessage(
        delivery=spec.Basic.Return(reply_code=312, reply_text="NO_ROUTE", exchange="events.x"),
        header=ContentHeader(),
        body=b"{}",
        channel=None,  # type: ignore[arg-type]
    )
    error = aiormq.exceptions.PublishError(returned, spec.Basic.Return())
    failure = not_confirmed(error, "events.x", "key", being_cancelled=False)
    assert failure is not None
    assert failure.reason == "unroutable: exchange 'events.x' key 'key'"
    assert (failure.kind, failure.remedy) == ("returned", Remedy.NONE)


def test_a_nack_replaces_the_channel() -> None:
    error = aiormq.exceptions.DeliveryError(None, spec.Basic.Nack(delivery_tag=7))
    assert classify(error) == ("nacked", Remedy.REPLACE_CHANNEL)


def test_no_confirm_in_time_replaces_a_stuck_channel() -> None:
    assert classify(TimeoutError()) == ("connection", Remedy.REPLACE_STUCK)


@pytest.mark.parametrize(
    "error",
    [
        aiormq.exceptions.ChannelInvalidStateError("channel closed"),
        aiormq.exceptions.AMQPConnectionError("Server connection unexpectedly closed"),
        aiormq.exceptions.ChannelClosed(None, None),
        ConnectionResetError(),
    ],
)
def test_a_channel_or_connection_failure_replaces_a_closed_channel(error: BaseException) -> None:
    assert classify(error) == ("connection", Remedy.REPLACE_IF_CLOSED)


def test_a_cancelled_confirm_is_lost_unless_the_publisher_itself_is_cancelled() -> None:
    assert classify(asyncio.CancelledError()) == ("connection", Remedy.NONE)
    assert classify(asyncio.CancelledError(), being_cancelled=True) is None


@pytest.mark.parametrize("error", [ValueError("a bug"), KeyError("x"), RuntimeError("y")])
def test_anything_else_is_not_a_publish_failure(error: BaseException) -> None:
    assert classify(error) is None
