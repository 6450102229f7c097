"""What /ready reports: every check, and which of them block the process.

Only a check the process cannot work without makes it unready (503, taken out of service). A
failing check that only degrades it (the broker, whose outage the outbox absorbs and the
robust connection recovers from by itself; the stock cache, which falls back to MongoDB) is
reported as `degraded` with 200: taking the process out of service would refuse orders it can
still take, and fix nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ready", "degraded", "not ready"]


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, bool]
    required: frozenset[str]

    @property
    def status(self) -> Status:
        if not all(ok for name, ok in self.checks.items() if name in self.required):
            return "not ready"
        return "ready" if all(self.checks.values()) else "degraded"

    @property
    def ready(self) -> bool:
        return self.status != "not ready"

    def body(self) -> dict[str, object]:
        degraded = sorted(n for n, ok in self.checks.items() if not ok and n not in self.required)
        return {"status": self.status, "checks": self.checks, "degraded": degraded}
