"""The consumer's header validation: anything but a sane integer count is refused."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest

from infra.messaging.errors import InvalidMessage
from infra.messaging.headers import MAX_ATTEMPT, attempt_of

pytestmark = [pytest.mark.unit, pytest.mark.security]


@pytest.mark.parametrize(
    "value",
    [
        math.inf,
        -math.inf,
        math.nan,
        "Infinity",
        "NaN",
        "3",
        b"3",
        2.0,
        True,
        Decimal("Infinity"),
        0,
        -5,
        MAX_ATTEMPT + 1,
        10**18,
        pytest.param(10**5000, id="int-over-the-digit-limit"),
        [1],
    ],
)
def test_anything_but_a_sane_count_is_an_invalid_message(value: Any) -> None:
    with pytest.raises(InvalidMessage, match="x-attempt"):
        attempt_of({"x-attempt": value})


def test_counts_in_range_are_read_and_absence_means_first_attempt() -> None:
    assert attempt_of(None) == 1
    assert attempt_of({}) == 1
    assert attempt_of({"x-attempt": 1}) == 1
    assert attempt_of({"x-attempt": MAX_ATTEMPT}) == MAX_ATTEMPT


def test_the_reason_stays_short_for_a_huge_value() -> None:
    with pytest.raises(InvalidMessage) as raised:
        attempt_of({"x-attempt": "9" * 100_000})
    assert len(str(raised.value)) < 200
