"""After a known batch, each service's counters moved by exactly the expected amounts
(scraped over HTTP, parsed with prometheus-client's own text parser)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.devstack.services import SERVICES
from tests.e2e.pipeline import Pipeline
from tests.e2e.test_order_flow import Shop

pytestmark = pytest.mark.e2e


@pytest.fixture
def shop(http: httpx.AsyncClient, pipeline: Pipeline, mongo: Any) -> Shop:
    return Shop(http, pipeline, mongo)


Sample = tuple[str, str, frozenset[tuple[str, str]]]


async def scrape(http: httpx.AsyncClient, pipeline: Pipeline) -> Counter[Sample]:
    """Every counter sample of every service, keyed by (service, sample name, labels)."""
    samples: Counter[Sample] = Counter()
    for service in SERVICES:
        text = (await http.get(f"{pipeline.url(service)}/metrics")).text
        for family in text_string_to_metric_families(text):
            if family.type != "counter":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = (service, sample.name, frozenset(sample.labels.items()))
                    samples[key] = int(sample.value)
    return samples


def moved(before: Counter[Sample], after: Counter[Sample], service: str, name: str,
          **labels: str) -> int:  # fmt: skip
    """How much the samples matching `labels` (a subset of theirs) moved in `service`."""
    wanted = set(labels.items())
    return sum(
        after[key] - before[key]
        for key in after
        if key[0] == service and key[1] == name and wanted <= key[2]
    )


async def test_counters_move_by_what_the_batch_did(
    shop: Shop, auth: dict[str, str], http: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    before = await scrape(http, pipeline)
    plan = [("tok_ok", 1)] * 3 + [("tok_decline", 1), ("tok_ok", 1000)]
    ids = [await shop.place(auth, [("SKU-0030", quantity)], method) for method, quantity in plan]
    await asyncio.gather(*(shop.settled(auth, i) for i in ids))
    await asyncio.gather(*(shop.notifications(i) for i in ids))
    after = await scrape(http, pipeline)

    published = "messages_published_total"
    assert moved(before, after, "order", published, event_type="OrderPlaced") == 5
    assert moved(before, after, "order", published, event_type="OrderConfirmed") == 3
    assert moved(before, after, "order", published, event_type="OrderCancelled") == 1
    assert moved(before, after, "order", published, event_type="OrderRejected") == 1
    assert moved(before, after, "inventory", published, event_type="StockReserved") == 4
    assert moved(before, after, "inventory", published, event_type="StockReservationFailed") == 1
    assert moved(before, after, "payment", published, event_type="PaymentSucceeded") == 3
    assert moved(before, after, "payment", published, event_type="PaymentFailed") == 1

    consumed = "messages_consumed_total"
    acked = {"outcome": "acked"}
    assert moved(before, after, "inventory", consumed, queue="inventory.order-placed", **acked) == 5
    assert moved(before, after, "payment", consumed, queue="payment.stock-reserved", **acked) == 4
    assert moved(before, after, "order", consumed, queue="order.payment-succeeded", **acked) == 3
    assert moved(before, after, "notification", consumed, outcome="dead_lettered") == 0

    attempts = "payment_attempts_total"
    assert moved(before, after, "payment", attempts, outcome="approved") == 3
    assert moved(before, after, "payment", attempts, outcome="declined") == 1
    ended = "orders_ended_total"
    assert moved(before, after, "order", ended, status="CONFIRMED") == 3
    assert moved(before, after, "order", ended, status="CANCELLED") == 1
    assert moved(before, after, "order", ended, status="REJECTED") == 1
    http_requests = "http_requests_total"
    assert moved(before, after, "order", http_requests, route="/orders", method="POST",
                 status="202") == 5  # fmt: skip
    polled = moved(before, after, "order", http_requests, route="/orders/{order_id}")
    assert polled >= 5
    sent = "notifications_sent_total"
    assert moved(before, after, "notification", sent, kind="order_confirmed") == 3
    assert moved(before, after, "notification", sent, kind="order_cancelled") == 1
    assert moved(before, after, "notification", sent, kind="order_rejected") == 1


async def test_each_service_reports_the_mongo_options_its_client_runs_with(
    http: httpx.AsyncClient, pipeline: Pipeline, mongo_url: str
) -> None:
    """The URL decides: the SecantusDB the tests start has retryWrites=false in its URL, and
    no option passed in code may turn them back on (PyMongo lets a keyword beat the URL)."""
    options = {k.lower(): v for k, v in parse_qsl(urlsplit(mongo_url).query)}
    expected = options.get("retrywrites", "true")
    for service in SERVICES:
        text = (await http.get(f"{pipeline.url(service)}/metrics")).text
        info = [f for f in text_string_to_metric_families(text) if f.name == "mongo_client_info"]
        assert len(info) == 1, service
        labels = info[0].samples[0].labels
        assert labels["retry_writes"] == expected, (service, labels)
        assert labels["retry_reads"] == "true", (service, labels)
