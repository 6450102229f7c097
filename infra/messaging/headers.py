"""The delivery headers the consumer reads, validated like any other input.

Headers come from whoever could publish to an exchange or move a message (a shovel, a replay,
an operator in the management UI), so each is checked before use: a header the consumer cannot
trust makes the delivery a permanent failure (dead-lettered with the reason), never an
exception outside the ack policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.messaging.errors import InvalidMessage

ATTEMPT_HEADER = "x-attempt"
# Far above any retry ladder (AMQP_RETRY_DELAYS_MS has a handful of tiers); a bigger count
# is not a count this system wrote.
MAX_ATTEMPT = 1_000


def attempt_of(headers: Mapping[str, Any] | None) -> int:
    """The delivery's attempt number (1 when absent). Raise InvalidMessage for anything but an
    integer in [1, MAX_ATTEMPT]: a float (Infinity, NaN, 2.0), a bool, a string, bytes."""
    value = (headers or {}).get(ATTEMPT_HEADER)
    if value is None:
        return 1
    # bool is an int subclass; AMQP tables carry it as its own type, so it is not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessage(
            f"header {ATTEMPT_HEADER} must be an integer, got {type(value).__name__} "
            f"{_shown(value)}"
        )
    if not 1 <= value <= MAX_ATTEMPT:
        raise InvalidMessage(f"header {ATTEMPT_HEADER}={_shown(value)} is outside 1..{MAX_ATTEMPT}")
    return value


def _shown(value: object) -> str:
    # The value goes into logs and DLQ headers: bounded.
    try:
        text = repr(value)
    except ValueError:  # an int too long for str() (sys.get_int_max_str_digits)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else f"{text[:57]}..."
