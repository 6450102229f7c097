"""The payment service's business metrics (default registry: one process, one service). Names
and labels are what the dashboards and alert rules in infra/ query; label values are bounded."""

from __future__ import annotations

from prometheus_client import Counter

PAYMENTS_REFUNDED = Counter(
    "payments_refunded_total",
    "Captured payments refunded because their order ended cancelled, by why it was cancelled "
    "(deadline, customer, other).",
    ["reason"],
)
PAYMENT_ATTEMPTS = Counter(
    "payment_attempts_total",
    "Payment gateway calls by outcome (approved, declined, unavailable).",
    ["outcome"],
)
