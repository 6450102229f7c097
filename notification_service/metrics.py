"""The notification service's business metrics (default registry: one process, one service).
Names and labels are what the dashboards and alert rules in infra/ query; label values are
bounded: channel and notification kind names."""

from __future__ import annotations

from prometheus_client import Counter

NOTIFICATIONS_SENT = Counter(
    "notifications_sent_total",
    "Notifications a channel accepted, by channel and kind.",
    ["channel", "kind"],
)
NOTIFICATION_SEND_FAILURES = Counter(
    "notification_send_failures_total",
    "Sends that failed (retried or dead-lettered by the consumer), by channel.",
    ["channel"],
)
