"""Prometheus metrics of the shared runtime (messaging, outbox, HTTP, clients). One process is
one service, so the default registry is the service's registry; label values are bounded (event
types, queue names, outcomes). A service's business counters live in its own `metrics.py`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from contracts.events import EVENT_SCHEMAS
from infra.observability.tallies import CounterTally, GaugeTally, HistogramTally

KNOWN_EVENT_TYPES = frozenset(event_type for event_type, _version in EVENT_SCHEMAS)
UNKNOWN_EVENT_TYPE = "unknown"


def event_type_label(event_type: str | None) -> str:
    """A label value for an event type: the type itself if the contracts know it, else one
    fixed value. A message's type comes from whoever published it; one label per invented
    type would let them grow the metrics without bound."""
    return event_type if event_type in KNOWN_EVENT_TYPES else UNKNOWN_EVENT_TYPE


# The four updated for every message are tallies (infra.observability.tallies): the same
# exposition without prometheus_client's lock per update.
MESSAGES_PUBLISHED = CounterTally(
    "messages_published_total",
    "Messages the broker confirmed, by event type.",
    ["event_type"],
)
PUBLISH_FAILURES = Counter(
    "messages_publish_failures_total",
    "Publishes the broker returned (unroutable), nacked, or that failed on the connection.",
    ["event_type", "reason"],
)
MESSAGES_CONSUMED = CounterTally(
    "messages_consumed_total",
    "Deliveries handled, by queue, event type and outcome (acked, retried, dead_lettered).",
    ["queue", "event_type", "outcome"],
)
HANDLER_DURATION = HistogramTally(
    "message_handler_duration_seconds",
    "Time from delivery to ack, by queue.",
    ["queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_IN_FLIGHT = GaugeTally(
    "consumer_in_flight_messages",
    "Deliveries being handled right now, by queue.",
    ["queue"],
)
# By collection: a process can run several relays (orders and customers in the order
# service); one unlabeled gauge was overwritten by whichever relay swept last.
OUTBOX_BACKLOG = Gauge(
    "outbox_backlog_events",
    "Events stored in the outbox and not yet confirmed by the broker (at the last sweep).",
    ["collection"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_event_age_seconds",
    "Age of the oldest unpublished outbox event at the last sweep (0 when empty).",
    ["collection"],
)
OUTBOX_RELAYED = Counter(
    "outbox_events_relayed_total",
    "Outbox events published and confirmed, by path (fast: right after the write; sweep).",
    ["path"],
)
HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template and method.",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
MONGO_CLIENT = Info(
    "mongo_client",
    "MongoDB driver options in force in this process, read back from the client "
    "(retry_writes, retry_reads, write_concern, read_preference).",
)
RATE_LIMITED = Counter(
    "http_rate_limited_total",
    "Requests refused with 429 by a rate limit or the login limiter, by action.",
    ["action"],
)
