"""The order service's business metrics (default registry: one process, one service). Names and
labels are what the dashboards and alert rules in infra/ query; label values are bounded."""

from __future__ import annotations

from prometheus_client import Counter

EVENTS_IGNORED = Counter(
    "domain_events_ignored_total",
    "Consumed events the domain ignored (duplicates, or late for an ended aggregate).",
    ["event_type"],
)
ORDERS_ENDED = Counter(
    "orders_ended_total",
    "Orders that reached a terminal status, by status.",
    ["status"],
)
ORDERS_DEADLINE_EXPIRED = Counter(
    "orders_deadline_expired_total",
    "Orders ended (cancelled) by their deadline, by the status they were stuck in "
    "(PENDING, RESERVED, or PAID: paid with no known reservation).",
    ["status_at_expiry"],
)
PASSWORD_VERIFICATIONS = Counter(
    "password_verifications_total",
    "Password hashes verified at login, by outcome (ok, wrong); refused attempts are not.",
    ["outcome"],
)
