import asyncio
import json
import logging
from typing import Any

import pytest

from infra.messaging.hooks import Delivery, Inbound
from infra.observability.logging import JsonFormatter, bind_message
from infra.observability.message_hooks import LogContext

pytestmark = pytest.mark.unit


def formatted(service: str) -> dict[str, Any]:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "handled", None, None)
    return dict(json.loads(JsonFormatter(service).format(record)))


def test_lines_carry_the_service_and_the_message_ids() -> None:
    async def handle() -> dict[str, Any]:
        bind_message(event_id="e-1", correlation_id="o-1")
        bind_message(causation_id="c-1")  # added once the body is decoded
        return formatted("inventory")

    line = asyncio.run(handle())
    assert line["service"] == "inventory"
    assert line["message"] == "handled"
    assert (line["event_id"], line["correlation_id"], line["causation_id"]) == ("e-1", "o-1", "c-1")


def test_ids_stay_in_the_task_that_handles_the_message() -> None:
    async def run() -> dict[str, Any]:
        async def handle() -> None:
            bind_message(event_id="inside")

        await asyncio.create_task(handle())
        return formatted("order")

    assert "event_id" not in asyncio.run(run())


def test_a_delivery_lines_carry_its_ids_as_they_are_when_written() -> None:
    async def handle() -> tuple[dict[str, Any], dict[str, Any]]:
        inbound = Inbound(b"{}", {}, "e-1", "OrderPlaced", "o-1")
        delivery = Delivery("inventory.order-placed", inbound, attempt=2)
        with LogContext().attempt(delivery):
            before_decoding = formatted("inventory")
            delivery.causation_id = "c-1"  # known once the body is decoded
            return before_decoding, formatted("inventory")

    before, after = asyncio.run(handle())
    assert (before["queue"], before["event_id"], before["attempt"]) == (
        "inventory.order-placed",
        "e-1",
        2,
    )
    assert (before["event_type"], before["correlation_id"]) == ("OrderPlaced", "o-1")
    assert "causation_id" not in before
    assert after["causation_id"] == "c-1"
