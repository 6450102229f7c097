"""Dispatch of one delivery with an in-memory settlement: every end, its copy's story headers,
and what the hooks see. No transport, no I/O."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.envelope import Envelope
from contracts.events import OrderConfirmed, OrderLine, OrderPlaced
from infra.messaging.dispatch import Dispatch, Subscription
from infra.messaging.errors import PermanentFailure, PublishFailed
from infra.messaging.hooks import ConsumeHook, Delivery, Inbound
from infra.messaging.story import for_replay

pytestmark = pytest.mark.unit

QUEUE = "inventory.OrderPlaced"
TIERS = ((100, 110), (1000,))


def placed() -> Envelope:
    event = OrderPlaced(
        order_id="o-1",
        customer_id="c-1",
        lines=[OrderLine(sku="SKU-0001", quantity=1)],
        payment_method="tok_ok",
    )
    return Envelope.wrap(event, producer="utest")


def inbound(envelope: Envelope, headers: dict[str, Any] | None = None) -> Inbound:
    return Inbound(
        body=envelope.model_dump_json().encode(),
        headers={"app": "kept", **(headers or {})},
        message_id=str(envelope.event_id),
        type=envelope.event_type,
        correlation_id=envelope.correlation_id,
        exchange="events.OrderPlaced",
    )


class Recorded:
    """A settlement that keeps what it was asked to do; `failing` publishes raise."""

    def __init__(self, failing: Sequence[Exception] = ()) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._failing = list(failing)

    async def ack(self) -> None:
        self.calls.append(("ack", None))

    async def requeue(self) -> None:
        self.calls.append(("requeue", None))

    async def reject(self) -> None:
        self.calls.append(("reject", None))

    async def retry(self, delay_ms: int, headers: dict[str, Any]) -> None:
        self._publish()
        self.calls.append(("retry", (delay_ms, headers)))

    async def dead_letter(self, headers: dict[str, Any]) -> None:
        self._publish()
        self.calls.append(("dead_letter", headers))

    def copied(self, how: str) -> Any:
        """What the one copy published `how` carried; the original was acked after it."""
        assert [call for call, _ in self.calls] == [how, "ack"]
        return self.calls[0][1]

    def _publish(self) -> None:
        if self._failing:
            raise self._failing.pop(0)


class Watching(ConsumeHook):
    def __init__(self) -> None:
        self.seen: list[str] = []

    @contextmanager
    def delivery(self, delivery: Delivery) -> Iterator[None]:
        self.seen.append("delivery")
        yield
        self.seen.append(f"delivered {delivery.outcome}")

    @contextmanager
    def attempt(self, delivery: Delivery) -> Iterator[None]:
        self.seen.append(f"attempt {delivery.attempt}")
        yield
        self.seen.append(f"attempted {delivery.outcome}")

    def decoded(self, delivery: Delivery) -> None:
        self.seen.append(f"decoded {delivery.causation_id}")

    def failed(self, delivery: Delivery, error: Exception) -> None:
        self.seen.append(f"failed {type(error).__name__}")


async def dispatched(
    handler_error: Exception | None,
    message: Inbound,
    settlement: Recorded,
    hook: ConsumeHook | None = None,
) -> str:
    handled: list[Envelope] = []

    async def handler(envelope: Envelope, event: Any) -> None:
        handled.append(envelope)
        if handler_error is not None:
            raise handler_error

    subscription = Subscription(QUEUE, "OrderPlaced", handler, TIERS)
    dispatch = Dispatch("inventory", (hook,) if hook else (), pick=lambda v: v[-1])
    return await dispatch(subscription, message, settlement)


async def test_a_handled_delivery_is_acked_and_the_hooks_see_it_all() -> None:
    settlement, hook = Recorded(), Watching()
    envelope = placed()
    assert await dispatched(None, inbound(envelope), settlement, hook) == "acked"
    assert settlement.calls == [("ack", None)]
    assert hook.seen == [
        "delivery",
        "attempt 1",
        f"decoded {envelope.causation_id}",
        "attempted acked",
        "delivered acked",
    ]


async def test_a_failure_is_retried_with_the_next_attempt_and_its_story() -> None:
    settlement, hook = Recorded(), Watching()
    message = inbound(placed(), {"x-attempt": 2, "x-first-failure-at": "earlier"})
    outcome = await dispatched(ConnectionError("gateway timeout"), message, settlement, hook)
    assert outcome == "retried"
    delay_ms, headers = settlement.copied("retry")
    assert delay_ms == 1000  # the second tier, picked deterministically
    assert headers["x-attempt"] == 3
    assert headers["x-exception-class"] == "ConnectionError"
    assert headers["x-exception-message"] == "gateway timeout"
    assert "ConnectionError" in headers["x-traceback"]
    assert headers["x-service"] == "inventory"
    assert headers["x-original-queue"] == QUEUE
    assert headers["x-original-exchange"] == "events.OrderPlaced"
    assert headers["x-event-id"] == message.message_id
    assert headers["x-event-type"] == "OrderPlaced"
    assert headers["x-first-failure-at"] == "earlier"  # the first failure's, kept
    assert headers["app"] == "kept"
    assert "x-dead-letter-reason" not in headers
    assert hook.seen[-3:] == ["failed ConnectionError", "attempted retried", "delivered retried"]


async def test_after_the_last_tier_the_copy_goes_to_the_dead_letter_queue() -> None:
    settlement = Recorded()
    message = inbound(placed(), {"x-attempt": 3})
    assert await dispatched(ValueError("boom"), message, settlement) == "dead_lettered"
    headers = settlement.copied("dead_letter")
    assert headers["x-dead-letter-reason"] == "retries exhausted"
    assert headers["x-attempts"] == 3
    assert headers["x-attempt"] == 3  # as it came: a replay resets it


async def test_a_permanent_failure_is_dead_lettered_at_once() -> None:
    settlement = Recorded()
    outcome = await dispatched(PermanentFailure("never valid"), inbound(placed()), settlement)
    assert outcome == "dead_lettered"
    headers = settlement.copied("dead_letter")
    assert (headers["x-dead-letter-reason"], headers["x-attempts"]) == ("permanent failure", 1)


async def test_a_bad_attempt_header_is_dead_lettered_before_any_attempt() -> None:
    settlement, hook = Recorded(), Watching()
    message = inbound(placed(), {"x-attempt": "3"})
    assert await dispatched(None, message, settlement, hook) == "dead_lettered"
    headers = settlement.copied("dead_letter")
    assert headers["x-dead-letter-reason"] == "permanent failure"
    assert headers["x-exception-class"] == "InvalidMessage"
    assert headers["x-attempts"] == 1
    assert hook.seen == ["delivery", "delivered dead_lettered"]  # never handled


async def test_an_event_of_another_type_is_never_handled() -> None:
    settlement, hook = Recorded(), Watching()
    confirmed = Envelope.wrap(
        OrderConfirmed(order_id="o-1", customer_id="c-1", total_cents=100), producer="utest"
    )
    assert await dispatched(None, inbound(confirmed), settlement, hook) == "dead_lettered"
    headers = settlement.copied("dead_letter")
    assert "OrderConfirmed delivered to" in headers["x-exception-message"]
    assert "failed InvalidMessage" in hook.seen
    assert not any(seen.startswith("decoded") for seen in hook.seen)


async def test_an_undecodable_body_is_a_permanent_failure() -> None:
    settlement = Recorded()
    message = Inbound(body=b"{not json", headers={}, message_id="m-1", type="OrderPlaced")
    assert await dispatched(None, message, settlement) == "dead_lettered"
    headers = settlement.copied("dead_letter")
    assert headers["x-dead-letter-reason"] == "permanent failure"


async def test_a_copy_the_broker_did_not_take_hands_the_delivery_back() -> None:
    settlement = Recorded(failing=[PublishFailed("nacked")])
    assert await dispatched(ValueError("boom"), inbound(placed()), settlement) == "requeued"
    assert settlement.calls == [("requeue", None)]


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of the handler's exception failed")


async def test_a_failure_outside_the_policy_is_dead_lettered_as_a_consumer_error() -> None:
    settlement, hook = Recorded(), Watching()
    assert await dispatched(_Unprintable(), inbound(placed()), settlement, hook) == "dead_lettered"
    headers = settlement.copied("dead_letter")
    assert headers["x-dead-letter-reason"] == "consumer error"
    assert headers["x-exception-class"] == "RuntimeError"
    assert headers["x-attempts"] == 1
    # The attempt ended with the error (no outcome of its own); the delivery did not.
    assert hook.seen[-2:] == ["failed _Unprintable", "delivered dead_lettered"]


async def test_when_even_the_dead_letter_fails_the_delivery_is_rejected() -> None:
    settlement = Recorded(failing=[RuntimeError("bug"), PublishFailed("no confirm")])
    assert await dispatched(ValueError("boom"), inbound(placed()), settlement) == "rejected"
    assert settlement.calls == [("reject", None)]


def test_a_replay_drops_the_failure_and_the_retry_count_and_keeps_the_history() -> None:
    now = datetime(2025, 1, 2, tzinfo=UTC)
    dead = {
        "app": "kept",
        "x-attempt": 4,
        "x-attempts": 4,
        "x-dead-letter-reason": "retries exhausted",
        "x-exception-class": "ValueError",
        "x-exception-message": "boom",
        "x-traceback": "...",
        "x-service": "inventory",
        "x-original-queue": QUEUE,
        "x-last-failure-at": "t2",
        "x-event-id": "e-1",
        "x-event-type": "OrderPlaced",
        "x-death": [{"queue": QUEUE}],
        "x-delivery-count": 3,
        "x-first-death-queue": QUEUE,
        "x-last-death-reason": "rejected",
        "x-first-failure-at": "t1",
        "x-original-exchange": "events.OrderPlaced",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    assert for_replay(dead, f"{QUEUE}.dlq", 2, now) == {
        "app": "kept",
        "x-first-failure-at": "t1",
        "x-original-exchange": "events.OrderPlaced",
        "traceparent": dead["traceparent"],
        "x-replay-count": 2,
        "x-replayed-at": now.isoformat(),
        "x-replayed-from": f"{QUEUE}.dlq",
    }
