"""The envelope every event travels in, whatever its type."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.events import Event


class Envelope(BaseModel):
    """Metadata shared by all events; `payload` is validated against the event's own schema.

    correlation_id is the aggregate id (the order id for the whole story of an order);
    causation_id is the id of the event that caused this one (None for events caused by an
    HTTP request).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    event_type: str = Field(min_length=1, max_length=100)
    schema_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    correlation_id: str = Field(min_length=1, max_length=200)
    causation_id: str | None = Field(default=None, max_length=200)
    producer: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        event: Event,
        *,
        producer: str,
        causation_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> Envelope:
        return cls(
            event_id=uuid.uuid4(),
            event_type=event.event_type,
            schema_version=event.schema_version,
            occurred_at=_to_millisecond(occurred_at or datetime.now(UTC)),
            correlation_id=event.aggregate_id,
            causation_id=causation_id,
            producer=producer,
            payload=event.model_dump(mode="json"),
        )


def _to_millisecond(moment: datetime) -> datetime:
    """BSON dates keep milliseconds; an envelope read back from the outbox must equal the one
    that was written, so timestamps start at that precision."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
