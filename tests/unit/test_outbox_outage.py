"""The outbox relay during a broker outage: paused, logged once, backing off, resumed."""

from __future__ import annotations

import logging

import pytest

from infra.messaging.outage import BrokerOutage

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = BrokerOutage(0.5, 5.0, clock)
    with caplog.at_level(logging.WARNING, logger="infra.messaging.outage"):
        assert outage.update(connected=True)
        for _ in range(50):
            assert not outage.update(connected=False)
            clock.now += 1
        assert outage.update(connected=True)
        assert outage.update(connected=True)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "broker unreachable: outbox relay paused, events wait in MongoDB",
        "broker reachable again after 50.0 s: outbox relay resumes",
    ]


def test_sweeps_back_off_while_paused_up_to_the_bound_then_return_to_the_poll_interval() -> None:
    outage = BrokerOutage(0.5, 5.0, Clock())
    assert outage.sweep_interval_s == 0.5
    outage.update(connected=False)
    assert [outage.sweep_interval_s for _ in range(6)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    outage.update(connected=True)
    assert outage.sweep_interval_s == 0.5


def test_unconfirmed_publishes_back_off_too() -> None:
    outage = BrokerOutage(1.0, 8.0, Clock())
    outage.published(all_confirmed=False)
    assert [outage.sweep_interval_s for _ in range(3)] == [2.0, 4.0, 8.0]
    outage.published(all_confirmed=True)
    assert outage.sweep_interval_s == 1.0
