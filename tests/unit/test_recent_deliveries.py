"""A JetStream consumer's memory of the deliveries it took in: a repeat (the same stream
sequence and delivery count) is told from a new delivery, within a bounded memory."""

from __future__ import annotations

import pytest

from infra.messaging.jetstream.recent_deliveries import Intake, RecentDeliveries

pytestmark = pytest.mark.unit


def test_a_delivery_is_new_once_and_a_repeat_after() -> None:
    recent = RecentDeliveries(capacity=8)
    assert recent.take(7, 1) is Intake.NEW
    assert recent.take(7, 1) is Intake.REPEAT
    assert recent.take(7, 1) is Intake.REPEAT


def test_another_count_or_another_sequence_is_a_new_delivery() -> None:
    recent = RecentDeliveries(capacity=8)
    assert recent.take(7, 1) is Intake.NEW
    assert recent.take(7, 2) is Intake.NEW  # the server's redelivery of the same message
    assert recent.take(8, 1) is Intake.NEW


def test_a_repeat_of_an_acked_delivery_says_so() -> None:
    recent = RecentDeliveries(capacity=8)
    recent.take(7, 1)
    recent.take(7, 2)
    recent.acked(7, 2)
    assert recent.take(7, 2) is Intake.REPEAT_OF_ACKED
    assert recent.take(7, 1) is Intake.REPEAT  # that one was left unsettled here


def test_an_ack_of_a_delivery_never_taken_in_remembers_nothing() -> None:
    recent = RecentDeliveries(capacity=8)
    recent.acked(7, 1)
    assert len(recent) == 0
    assert recent.take(7, 1) is Intake.NEW


def test_past_its_capacity_the_oldest_delivery_is_forgotten() -> None:
    recent = RecentDeliveries(capacity=3)
    for sequence in (1, 2, 3, 4):
        assert recent.take(sequence, 1) is Intake.NEW
    assert len(recent) == 3
    assert recent.take(2, 1) is Intake.REPEAT
    assert recent.take(1, 1) is Intake.NEW  # forgotten: taken for a new one
    assert len(recent) == 3


def test_a_repeat_does_not_make_a_delivery_younger() -> None:
    recent = RecentDeliveries(capacity=2)
    recent.take(1, 1)
    recent.take(2, 1)
    assert recent.take(1, 1) is Intake.REPEAT
    recent.take(3, 1)  # evicts (1, 1), the first taken in, repeated or not
    assert recent.take(2, 1) is Intake.REPEAT
    assert recent.take(1, 1) is Intake.NEW


def test_a_memory_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RecentDeliveries(capacity=0)
