"""The outbox relay's view of a broker outage: pause, log once, back off, resume.

Without it the relay tried every pending event on every sweep while the broker was down and
logged each failure: 9,029 warnings in a 70 s outage, and no backoff. Now a relay that finds
the broker unreachable logs one line, publishes nothing (events wait in MongoDB; the sweep
still reads them, so the backlog and oldest-age metrics keep moving), sweeps less and less
often up to `max_s`, and logs one line when the broker is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class BrokerOutage:
    def __init__(
        self, base_s: float, max_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._base_s = base_s
        self._max_s = max(base_s, max_s)
        self._clock = clock
        self._since: float | None = None
        self._unhealthy_sweeps = 0  # in a row: paused, or some publishes not confirmed
        self._last_failed = False

    @property
    def paused(self) -> bool:
        return self._since is not None

    def update(self, connected: bool) -> bool:
        """Record whether the broker is reachable now; True if the relay may publish."""
        if connected:
            if self._since is not None:
                log.warning(
                    "broker reachable again after %.1f s: outbox relay resumes",
                    self._clock() - self._since,
                )
                self._since = None
            return True
        if self._since is None:
            self._since = self._clock()
            log.warning("broker unreachable: outbox relay paused, events wait in MongoDB")
        return False

    def published(self, all_confirmed: bool) -> None:
        self._last_failed = not all_confirmed

    @property
    def sweep_interval_s(self) -> float:
        """Time to the next sweep: the poll interval while healthy, doubled per unhealthy
        sweep in a row, up to the bound."""
        if not self.paused and not self._last_failed:
            self._unhealthy_sweeps = 0
            return self._base_s
        self._unhealthy_sweeps += 1
        return float(min(self._max_s, self._base_s * 2**self._unhealthy_sweeps))
