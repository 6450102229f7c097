"""The inventory service's metrics (default registry: one process, one service). Names and
labels are what the dashboards and alert rules in infra/ query; label values are bounded."""

from __future__ import annotations

from prometheus_client import Counter

CACHE_REQUESTS = Counter(
    "stock_cache_requests_total",
    "Stock cache lookups by result (hit, miss, bypass, error).",
    ["result"],
)
