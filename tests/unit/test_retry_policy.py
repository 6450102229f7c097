"""The retry policy: every way a delivery can end, decided without I/O."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from infra.messaging.errors import InvalidMessage, PermanentFailure, PublishFailed, RetryLater
from infra.messaging.retry_policy import (
    CONSUMER_ERROR,
    PERMANENT_FAILURE,
    RETRIES_EXHAUSTED,
    Ack,
    DeadLetter,
    Requeue,
    Retry,
    decide,
    recover,
)

pytestmark = pytest.mark.unit

TIERS = ((1000, 1100, 1200), (5000, 5500), (30_000,))


def first(variants: Sequence[int]) -> int:
    return variants[0]


def last(variants: Sequence[int]) -> int:
    return variants[-1]


def test_success_is_acked_whatever_the_attempt() -> None:
    assert decide(None, 1, TIERS, first) == Ack()
    assert decide(None, len(TIERS) + 1, TIERS, first) == Ack()
    assert decide(None, 1, (), first) == Ack()


@pytest.mark.parametrize(
    "error",
    [
        InvalidMessage("undecodable body"),
        PermanentFailure("never valid"),
        RecursionError("nested too deep"),
        # A header that fails validation is an InvalidMessage at attempt 1.
        InvalidMessage("header x-attempt must be an integer, got str '3'"),
    ],
)
def test_permanent_failures_are_dead_lettered_at_once(error: Exception) -> None:
    assert decide(error, 1, TIERS, first) == DeadLetter(PERMANENT_FAILURE)
    # Permanent wins over exhausted: the reason says retrying could never have helped.
    assert decide(error, len(TIERS) + 1, TIERS, first) == DeadLetter(PERMANENT_FAILURE)


def test_an_event_of_another_type_is_a_permanent_failure() -> None:
    mismatched = InvalidMessage("OrderConfirmed delivered to q, which carries OrderPlaced only")
    assert decide(mismatched, 2, TIERS, first) == DeadLetter(PERMANENT_FAILURE)


@pytest.mark.parametrize(
    "error",
    [ConnectionError("gateway timeout"), RetryLater("not yet"), PublishFailed("nacked")],
)
def test_other_failures_wait_in_the_attempts_tier(error: Exception) -> None:
    assert decide(error, 1, TIERS, first) == Retry(1000)
    assert decide(error, 1, TIERS, last) == Retry(1200)
    assert decide(error, 2, TIERS, last) == Retry(5500)
    assert decide(error, 3, TIERS, first) == Retry(30_000)


def test_the_pick_chooses_among_the_variants_of_that_attempts_tier_only() -> None:
    offered: list[tuple[int, ...]] = []

    def recording(variants: Sequence[int]) -> int:
        offered.append(tuple(variants))
        return variants[1]

    assert decide(ValueError("boom"), 2, TIERS, recording) == Retry(5500)
    assert offered == [TIERS[1]]


def test_by_default_the_delay_is_one_of_the_tiers_variants() -> None:
    delays = {decide(ValueError("boom"), 1, TIERS) for _ in range(200)}
    assert delays <= {Retry(d) for d in TIERS[0]}
    assert len(delays) > 1


def test_after_the_last_tier_the_message_is_dead_lettered() -> None:
    error = ConnectionError("still down")
    assert decide(error, len(TIERS) + 1, TIERS, first) == DeadLetter(RETRIES_EXHAUSTED)
    assert decide(error, 1000, TIERS, first) == DeadLetter(RETRIES_EXHAUSTED)
    # No tiers at all: the first failure is the last.
    assert decide(error, 1, (), first) == DeadLetter(RETRIES_EXHAUSTED)


def test_a_copy_the_broker_did_not_take_requeues_anything_else_is_a_consumer_error() -> None:
    assert recover(PublishFailed("no confirm")) == Requeue()
    assert recover(RuntimeError("__str__ failed")) == DeadLetter(CONSUMER_ERROR)
    assert recover(PermanentFailure("in the retry path")) == DeadLetter(CONSUMER_ERROR)


def test_each_end_names_its_metric_outcome() -> None:
    outcomes = [Ack().outcome, Retry(1).outcome, DeadLetter("x").outcome, Requeue().outcome]
    assert outcomes == ["acked", "retried", "dead_lettered", "requeued"]


def test_decisions_are_frozen_values() -> None:
    retry = Retry(1000)
    with pytest.raises(AttributeError):
        retry.delay_ms = 5  # type: ignore[misc]
    assert retry == Retry(1000)
    assert hash(DeadLetter(PERMANENT_FAILURE)) == hash(DeadLetter(PERMANENT_FAILURE))
