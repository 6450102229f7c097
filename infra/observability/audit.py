"""Audit lines: who did what security-relevant thing, as structured fields on one JSON log line
(logger `audit`). Callers pass identifiers only (customer id, email, client address, SKU),
never a secret: no password, no token, no hash of either."""

from __future__ import annotations

import logging
from typing import Any

_log = logging.getLogger("audit")


def audit(action: str, **fields: Any) -> None:
    _log.info(action, extra={"fields": {"audit": action, **fields}})
