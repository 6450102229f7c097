"""The deployment files against the running pipeline.

The four services run as OS processes on the real servers, each connected to RabbitMQ as its
own user with the permissions of definitions.json (imported into a vhost of this run), with
the rest of its compose environment (but ENVIRONMENT=test: this run's MongoDB and Redis have no
credentials, which production refuses; tests/deploy/test_compose.py checks the production
settings). One order goes through, a
flaky payment is retried, a poison message is dead-lettered: the least-privilege users are
enough for every path. Then every service's
/metrics is scraped, and every metric the dashboard and the alert rules query must be exported
by some service (RabbitMQ's own rabbitmq_* metrics and Prometheus' `up` excepted).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import aiormq
import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from pymongo import MongoClient

from contracts.topology import dead_letter_queue_name, exchange_name, queue_name
from infra import devstack
from infra.devstack import RabbitVhost
from tests.deploy.manifests import (
    PROMETHEUS_GENERATED,
    SERVICES,
    VHOST,
    alert_expressions,
    compose_services,
    dashboard_expressions,
    definitions,
    is_rabbitmq_metric,
    promql_metric_names,
    service_environment,
)
from tests.e2e.pipeline import Pipeline
from tests.integration.waiting import eventually

pytestmark = pytest.mark.deploy

# Sample names a family of each type exposes (the parser strips `_total` from counters).
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
# A message no consumer can decode: a permanent failure, dead-lettered at once.
POISON_EVENT = "OrderConfirmed"
POISON_CONSUMER = "notification"


@dataclass(frozen=True)
class BrokerUsers:
    """The service users of definitions.json, imported under run-specific names."""

    vhost: RabbitVhost
    amqp_urls: dict[str, str]
    keda: tuple[str, str]


# Where the servers are and where to listen differ here from compose, and the local servers
# have no credentials (ENVIRONMENT=test); the rest of each service's compose environment is
# used as is.
SITE_SPECIFIC = frozenset(
    {"AMQP_URL", "MONGO_URL", "REDIS_URL", "HTTP_HOST", "HTTP_PORT", "ENVIRONMENT"}
)


@dataclass
class LeastPrivilegePipeline(Pipeline):
    """The e2e pipeline, with each service's compose environment and its own broker user."""

    amqp_urls: dict[str, str] = field(default_factory=dict)

    def env(self, service: str) -> dict[str, str]:
        from_compose = service_environment(compose_services()[service])
        return {
            **super().env(service),
            **{k: v for k, v in from_compose.items() if k not in SITE_SPECIFIC},
            "AMQP_URL": self.amqp_urls[service],
        }


def _with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture(scope="module")
def broker_users(rabbitmq_vhost: RabbitVhost) -> Iterator[BrokerUsers]:
    management = rabbitmq_vhost.management
    run = uuid.uuid4().hex[:6]
    vhost = f"deploy-{run}"
    devstack.create_vhost(vhost, management)
    source = definitions()
    wanted = {*SERVICES, "keda"}
    users = [
        {**u, "name": f"deploy-{run}-{u['name']}"} for u in source["users"] if u["name"] in wanted
    ]
    permissions = [
        {**p, "user": f"deploy-{run}-{p['user']}", "vhost": vhost}
        for p in source["permissions"]
        if p["user"] in wanted and p["vhost"] == VHOST
    ]
    try:
        # The file's own user entries (plain `password`, `tags` list) through RabbitMQ's
        # definitions import, the same code path as `management.load_definitions` at boot.
        imported = management.request(
            "POST", "/definitions", json={"users": users, "permissions": permissions}
        )
        assert imported.is_success, imported.text
        base = rabbitmq_vhost.url.rsplit("/", 1)[0] + "/" + quote(vhost, safe="")
        passwords = {u["name"].removeprefix(f"deploy-{run}-"): u["password"] for u in users}
        yield BrokerUsers(
            RabbitVhost(base, vhost, management),
            {s: _with_credentials(base, f"deploy-{run}-{s}", passwords[s]) for s in SERVICES},
            (f"deploy-{run}-keda", passwords["keda"]),
        )
    finally:
        for user in users:
            management.request("DELETE", f"/users/{quote(user['name'], safe='')}")
        devstack.delete_vhost(vhost, management)


@pytest.fixture(scope="module")
def own_redis_db(redis_url: str) -> Iterator[str]:
    """Redis DB 14: the stock cache is keyed by SKU, and the e2e pipeline (DB 15, same SKUs,
    another MongoDB database) must not read this run's stock levels."""
    url = urlunsplit(urlsplit(redis_url)._replace(path="/14"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="module")
def pipeline(
    broker_users: BrokerUsers,
    mongo_url: str,
    own_redis_db: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LeastPrivilegePipeline]:
    log_dir: Path = tmp_path_factory.mktemp("deploy-service-logs")
    running = LeastPrivilegePipeline(
        broker_users.vhost.url,
        mongo_url,
        own_redis_db,
        log_dir,
        extra_env={
            # Short delay tiers keep the flaky payment (two transient failures) to seconds.
            "AMQP_RETRY_DELAYS_MS": "[500,1000]",
            "OUTBOX_POLL_INTERVAL_S": "0.5",
        },
        amqp_urls=broker_users.amqp_urls,
    )
    running.seed(60, 100)
    try:
        running.start_all()
        yield running
    finally:
        codes = running.stop_all()
        for service in SERVICES:
            print(f"--- {service} log tail ---\n{running.tail(service, 15)}")
        client: MongoClient[dict[str, Any]] = MongoClient(mongo_url)
        for service in SERVICES:
            client.drop_database(running.database(service))
        client.close()
    assert codes == dict.fromkeys(SERVICES, 0), f"unclean shutdown: {codes}"


async def _place_order(http: httpx.AsyncClient, base: str, payment_method: str) -> None:
    email = f"deploy-{uuid.uuid4().hex[:8]}@example.com"
    credentials = {"email": email, "password": "correct horse battery"}
    created = await http.post(f"{base}/customers", json={**credentials, "name": "Deploy"})
    assert created.status_code == 201, created.text
    session = await http.post(f"{base}/sessions", json=credentials)
    assert session.status_code == 201, session.text
    auth = {"Authorization": f"Bearer {session.json()['token']}"}
    order = {"items": [{"sku": "SKU-0001", "quantity": 1}], "payment_method": payment_method}
    placed = await http.post(f"{base}/orders", headers=auth, json=order)
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["order_id"]

    async def status() -> str | None:
        response = await http.get(f"{base}/orders/{order_id}", headers=auth)
        assert response.status_code == 200, response.text
        current = str(response.json()["status"])
        return current if current in {"CONFIRMED", "REJECTED", "CANCELLED"} else None

    assert await eventually(status, timeout_s=45, interval_s=0.1) == "CONFIRMED"


async def _message_count(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        return int(count or 0)


async def _poison_is_dead_lettered(users: BrokerUsers) -> None:
    """Undecodable JSON on an exchange the notification service consumes: its user must be
    allowed to dead-letter it through `dead-letters` into its DLQ."""
    connection = await aio_pika.connect(users.vhost.url)  # the test's own (guest) account
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name(POISON_EVENT), ensure=False)
        await exchange.publish(aio_pika.Message(b"{not json", message_id=uuid.uuid4().hex), "")
    dlq = dead_letter_queue_name(queue_name(POISON_CONSUMER, POISON_EVENT))
    assert await eventually(lambda: _message_count(users.vhost.url, dlq), timeout_s=20) == 1


async def _refused(amqp_url: str, action: str, name: str) -> bool:
    """True if the broker refuses `action` on `name` for the user of `amqp_url`."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        try:
            if action == "declare-queue":
                await channel.declare_queue(
                    name, durable=True, arguments={"x-queue-type": "quorum"}
                )
            else:
                exchange = await channel.get_exchange(name, ensure=False)
                await exchange.publish(aio_pika.Message(b"{}"), "", timeout=5)
        except aiormq.exceptions.ChannelAccessRefused:
            return True
        return False


def _exported_sample_names(exposition: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names |= {f"{family.name}{suffix}" for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))}
        for sample in family.samples:
            names.add(sample.name)
            # Prometheus attaches `service`, `job` and `instance` at scrape time; an exported
            # label of that name would be renamed exported_<label> and break the queries.
            assert not {"service", "job", "instance"} & set(sample.labels), sample
    return names


async def test_least_privilege_users_run_the_pipeline_and_queries_match_the_scrape(
    pipeline: LeastPrivilegePipeline, broker_users: BrokerUsers
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        await _place_order(http, pipeline.url("order"), "tok_ok")
        # Two transient failures: retried through the default exchange, then approved.
        await _place_order(http, pipeline.url("order"), "tok_flaky")
        await _poison_is_dead_lettered(broker_users)
        stock = await http.get(f"{pipeline.url('inventory')}/stock/SKU-0001")
        assert stock.status_code == 200, stock.text

        # What the users must not do: touch another service's queue, forge its events.
        order, payment = broker_users.amqp_urls["order"], broker_users.amqp_urls["payment"]
        assert await _refused(order, "declare-queue", queue_name("payment", "StockReserved"))
        assert await _refused(payment, "publish", exchange_name("OrderPlaced"))

        # KEDA's user reads queue depths over the management API (the figures appear with
        # the broker's next statistics emission).
        management = broker_users.vhost.management
        queue = queue_name("payment", "StockReserved")
        url = (
            f"{management.url}/api/queues/{quote(broker_users.vhost.vhost, safe='')}/"
            f"{quote(queue, safe='')}"
        )

        async def depth() -> dict[str, Any] | None:
            response = await http.get(url, auth=broker_users.keda)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body if "messages" in body else None

        assert (await eventually(depth, timeout_s=20, interval_s=0.5))["name"] == queue

        exported: dict[str, set[str]] = {}
        for service in SERVICES:
            response = await http.get(f"{pipeline.url(service)}/metrics")
            assert response.status_code == 200
            exported[service] = _exported_sample_names(response.text)

    everything = set().union(*exported.values())
    queried = {
        "dashboard": dashboard_expressions(),
        "alerts": alert_expressions(),
    }
    ours = {
        name
        for expressions in queried.values()
        for expression in expressions
        for name in promql_metric_names(expression)
        if not is_rabbitmq_metric(name) and name not in PROMETHEUS_GENERATED
    }
    assert len(ours) >= 10, ours  # the extraction found the queries' metrics
    missing = {
        (source, name, expression)
        for source, expressions in queried.items()
        for expression in expressions
        for name in promql_metric_names(expression)
        if not is_rabbitmq_metric(name)
        and name not in PROMETHEUS_GENERATED
        and name not in everything
    }
    assert not missing, f"queried but exported by no service: {sorted(missing)}"
    # The flows above produced samples, not just declarations, for the core series.
    for name in ("messages_published_total", "messages_consumed_total", "http_requests_total"):
        assert all(name in exported[s] for s in ("order", "inventory")), name
