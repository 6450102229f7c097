"""One JSON object per log line, tagged with the service, so logs can be shipped and queried.

Lines written while a span is current also carry its trace_id and span_id, so a log line leads
to its trace and a trace to every line of every service it went through.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Protocol

from infra.observability.tracing import current_ids

# Ids of the message being handled. Each delivery runs in its own task, so each sees its own.
message_context: ContextVar[dict[str, Any] | None] = ContextVar("message_context", default=None)


class LogIds(Protocol):
    def log_ids(self) -> Mapping[str, Any]:
        """The ids a log line written now carries."""
        ...


# The delivery being handled, asked for its ids only when a line is written: most deliveries
# log nothing, and building their ids for every one of them cost more than the lookup.
delivery_context: ContextVar[LogIds | None] = ContextVar("delivery_context", default=None)


def bind_message(**ids: Any) -> None:
    """Tag every log line of the current task with these ids (event, correlation, ...)."""
    message_context.set({**(message_context.get() or {}), **ids})


def bind_delivery(delivery: LogIds) -> None:
    """Tag every log line of the current task with the ids `delivery` has when it is written."""
    delivery_context.set(delivery)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(message_context.get() or {})
        delivery = delivery_context.get()
        if delivery is not None:
            line.update(delivery.log_ids())
        line.update(current_ids())
        # Structured fields of the line itself (audit lines: `extra={"fields": {...}}`).
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiormq logs every reconnect attempt at warning with a traceback; keep it to errors.
    logging.getLogger("aiormq").setLevel(logging.ERROR)
