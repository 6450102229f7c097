"""A real Prometheus server on the project's own scrape config and alert rules.

Debian's `prometheus` binary, on a port and data directory of its own, scrapes the four
services (OS processes) and RabbitMQ's rabbitmq_prometheus plugin. The config and rules are
the files in infra/deploy/prometheus, rewritten only for local targets, a 1 s interval and a
short `for:` (infra/devstack/prometheus.py). Then the operator's incidents, each seen firing
through Prometheus' HTTP API and resolving after the operator's fix:
- a poison message in a DLQ -> DeadLetterQueueNotEmpty; drained with `python -m infra.dlq purge`;
- a consumer gone -> QueueWithoutConsumer; the service restarted;
- an outbox that cannot publish (its exchange unroutable) -> OutboxLagHigh; the binding restored.
Alerts are matched on this run's vhost: the broker is shared with other test runs.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import aio_pika
import httpx
import pytest
from pymongo import MongoClient

from contracts.topology import dead_letter_queue_name, exchange_name, queue_name
from infra.devstack import RabbitVhost
from infra.devstack.prometheus import PrometheusServer, start_prometheus
from infra.devstack.services import SERVICES
from tests.e2e.pipeline import Pipeline, pipeline_fixture
from tests.integration.waiting import eventually

pytestmark = pytest.mark.ops

# `for:` short enough for a test; every expression and threshold stays the project's.
FOR_OVERRIDES = {
    "DeadLetterQueueNotEmpty": "2s",
    "QueueWithoutConsumer": "2s",
    "OutboxLagHigh": "2s",
}
# RabbitMQ refreshes its queue statistics every 5 s; scrape, evaluate, then `for:` add a few.
ALERT_TIMEOUT_S = 45.0
POISON_EVENT, POISON_CONSUMER = "OrderConfirmed", "notification"
# OutboxLagHigh's threshold is 60 s: an event stuck that long is simulated by dating the
# stuck event two minutes back rather than by waiting a minute.
STUCK_FOR = timedelta(minutes=2)


# A pipeline of its own: these tests stop a service and unbind an exchange.
pipeline = pipeline_fixture(
    "pipeline",
    {"AMQP_RETRY_DELAYS_MS": "[500]", "OUTBOX_POLL_INTERVAL_S": "0.5"},
    seed=(5, 100),
)


@pytest.fixture(scope="module")
def prometheus(
    pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    targets = {service: pipeline.url(service).removeprefix("http://") for service in SERVICES}
    workdir = tmp_path_factory.mktemp("prometheus")
    server = start_prometheus(workdir, targets, interval="1s", for_overrides=FOR_OVERRIDES)
    try:
        yield server
    finally:
        server.stop()
        print(f"--- prometheus log tail ---\n{server.log.read_text()[-1500:]}")


def _vhost(pipeline: Pipeline) -> str:
    return unquote(pipeline.amqp_url.rsplit("/", 1)[1])


def _firing(server: PrometheusServer, name: str, **labels: str) -> list[dict[str, Any]]:
    return [
        alert
        for alert in server.alerts()
        if alert["labels"].get("alertname") == name
        and alert["state"] == "firing"
        and all(alert["labels"].get(k) == v for k, v in labels.items())
    ]


def _active(server: PrometheusServer, name: str, **labels: str) -> bool:
    """Pending or firing: resolved means gone from /api/v1/alerts."""
    return any(
        alert["labels"].get("alertname") == name
        and all(alert["labels"].get(k) == v for k, v in labels.items())
        for alert in server.alerts()
    )


async def _fires_then_resolves_after(
    server: PrometheusServer, name: str, labels: dict[str, str], fix: Any
) -> dict[str, Any]:
    fired = await eventually(lambda: _firing(server, name, **labels), ALERT_TIMEOUT_S, 0.5)
    await fix()
    await eventually(lambda: not _active(server, name, **labels), ALERT_TIMEOUT_S, 0.5)
    return dict(fired[0])


async def test_every_target_is_scraped(prometheus: PrometheusServer) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        targets = prometheus.targets()
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    targets = await eventually(all_up, timeout_s=30, interval_s=0.5)
    jobs = {(t["labels"]["job"], t["labels"]["service"]) for t in targets}
    assert jobs == {*(("order-pipeline", s) for s in SERVICES), ("rabbitmq", "rabbitmq")}


async def test_dead_letter_alert_fires_and_resolves_when_the_cli_drains_the_dlq(
    pipeline: Pipeline, prometheus: PrometheusServer
) -> None:
    connection = await aio_pika.connect(pipeline.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name(POISON_EVENT), ensure=False)
        await exchange.publish(aio_pika.Message(b"{not json", message_id=uuid.uuid4().hex), "")
    dlq = dead_letter_queue_name(queue_name(POISON_CONSUMER, POISON_EVENT))
    vhost = _vhost(pipeline)

    async def drain_with_the_cli() -> None:
        command = [sys.executable, "-m", "infra.dlq", "purge", dlq, "--vhost", vhost, "--yes"]
        done = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(done.communicate(), timeout=60)
        assert done.returncode == 0, stderr.decode()

    alert = await _fires_then_resolves_after(
        prometheus,
        "DeadLetterQueueNotEmpty",
        {"vhost": vhost, "queue": dlq},
        drain_with_the_cli,
    )
    assert alert["annotations"]["summary"] == f"1 dead letter(s) in {dlq}"
    assert alert["labels"]["severity"] == "warning"


async def test_no_consumer_alert_fires_while_a_service_is_down(
    pipeline: Pipeline, prometheus: PrometheusServer
) -> None:
    assert pipeline.stop("notification") == 0
    queue = queue_name("notification", "OrderConfirmed")

    async def restart() -> None:
        pipeline.start("notification")
        pipeline.wait_ready("notification", 60)

    alert = await _fires_then_resolves_after(
        prometheus, "QueueWithoutConsumer", {"vhost": _vhost(pipeline), "queue": queue}, restart
    )
    assert alert["labels"]["severity"] == "critical"


async def _customer(http: httpx.AsyncClient, base: str) -> dict[str, str]:
    credentials = {"email": f"ops-{uuid.uuid4().hex[:8]}@example.com", "password": "c0rrect horse"}
    created = await http.post(f"{base}/customers", json={**credentials, "name": "Ops"})
    assert created.status_code == 201, created.text
    session = await http.post(f"{base}/sessions", json=credentials)
    assert session.status_code == 201, session.text
    return {"Authorization": f"Bearer {session.json()['token']}"}


async def test_outbox_lag_alert_fires_while_events_cannot_be_published(
    pipeline: Pipeline, prometheus: PrometheusServer, rabbitmq_vhost: RabbitVhost, mongo_url: str
) -> None:
    management, vhost = rabbitmq_vhost.management, quote(_vhost(pipeline), safe="")
    exchange, queue = exchange_name("OrderPlaced"), queue_name("inventory", "OrderPlaced")
    binding = f"/bindings/{vhost}/e/{quote(exchange, safe='')}/q/{quote(queue, safe='')}"
    # inventory is OrderPlaced's only subscriber: without this binding a mandatory publish
    # comes back unroutable and the event stays in the outbox, as in a misdeployment.
    listed = management.request("GET", binding)
    listed.raise_for_status()
    bound = listed.json()
    assert bound, f"{queue} is not bound to {exchange}"
    for each in bound:
        management.request("DELETE", f"{binding}/{quote(each['properties_key'], safe='')}")
    async with httpx.AsyncClient(timeout=10) as http:
        base = pipeline.url("order")
        auth = await _customer(http, base)
        order = {"items": [{"sku": "SKU-0001", "quantity": 1}], "payment_method": "tok_ok"}
        placed = await http.post(f"{base}/orders", headers=auth, json=order)
        assert placed.status_code == 202, placed.text
        order_id = placed.json()["order_id"]
        client: MongoClient[dict[str, Any]] = MongoClient(mongo_url, tz_aware=True)
        with client:
            orders = client[pipeline.database("order")]["orders"]
            stored = orders.find_one({"_id": order_id}, {"outbox": 1})
            assert stored is not None
            stuck = stored["outbox"]  # unroutable: nothing after OrderPlaced happened
            assert [e["event_type"] for e in stuck] == ["OrderPlaced"], stored["outbox"]
            backdated = stuck[0]["occurred_at"] - STUCK_FOR
            orders.update_one(
                {"_id": order_id, "outbox.event_id": stuck[0]["event_id"]},
                {"$set": {"outbox.$.occurred_at": backdated}},
            )

        async def restore_the_binding() -> None:
            for each in bound:
                again = {"routing_key": each["routing_key"], "arguments": each["arguments"]}
                management.request("POST", binding, json=again).raise_for_status()

        alert = await _fires_then_resolves_after(
            prometheus, "OutboxLagHigh", {"service": "order"}, restore_the_binding
        )
        assert alert["labels"]["severity"] == "warning"

        async def confirmed() -> bool:
            response = await http.get(f"{base}/orders/{order_id}", headers=auth)
            return bool(response.json()["status"] == "CONFIRMED")

        # The sweep published the stuck event once it could: the order completes.
        assert await eventually(confirmed, timeout_s=30, interval_s=0.2)


def test_rewrite_kept_the_project_rules(prometheus: PrometheusServer) -> None:
    rules = Path(prometheus.log.parent / "alerts.yml").read_text()
    assert '"for": "2s"' in rules
    groups = prometheus.get("rules")["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"DeadLetterQueueNotEmpty", "QueueWithoutConsumer", "OutboxLagHigh"} <= names
