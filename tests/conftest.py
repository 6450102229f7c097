"""Session-wide real servers for every test layer: RabbitMQ, MongoDB and Redis. No mocks.

By default the servers are local processes (the same ones `infra/bin/up` uses, via
infra.devstack). With TESTCONTAINERS=1 and a reachable Docker engine, throwaway containers
are used instead. Either way each run is isolated: a fresh RabbitMQ vhost, a fresh MongoDB
(or TEST_MONGO_URL), and Redis DB 15 (or TEST_REDIS_URL) flushed at start.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pymongo import AsyncMongoClient, MongoClient

from infra import devstack
from infra.devstack import Management, MongoServer, RabbitVhost
from infra.devstack.rabbitmq import PLUGINS
from infra.devstack.redis_bus import BusRedisProcess, ensure_bus_redis
from infra.observability import tracing

# Unset, ENVIRONMENT means production, which refuses these local servers' defaults (guest,
# no credentials). Tests about production set it themselves (monkeypatch, a process env).
os.environ["ENVIRONMENT"] = "test"

LOCAL_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672"
# TEST_REDIS_URL (DB 15 of another local port, say) lets two test runs share a machine: each
# run flushes its DB at start. A local port that does not answer gets a server of its own.
LOCAL_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# NATS JetStream for EVENT_BUS=nats tests. The server may be shared: every test run names its
# streams under a prefix of its own (NATS_PREFIX) and deletes them after.
LOCAL_NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_STORE_DIR = Path(__file__).resolve().parent.parent / ".data" / "nats"

# The event bus Redis (EVENT_BUS=redis): a server of its own with its AOF on, never the cache's.
# Each test that uses it takes a key namespace of its own (bus_namespace) and deletes it.
SHARED_BUS_REDIS_URL = os.environ.get("TEST_BUS_REDIS_URL")
BUS_REDIS_DATA = Path(__file__).resolve().parent.parent / ".data" / "bus-redis"
CONTAINER_START_TIMEOUT = 120.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1, for servers a test starts itself."""
    return devstack.free_port()


@pytest.fixture(scope="session")
def use_testcontainers() -> bool:
    wanted = os.environ.get("TESTCONTAINERS") == "1"
    if wanted and not devstack.docker_engine_available():
        warnings.warn("TESTCONTAINERS=1 but no Docker engine; local servers", stacklevel=2)
        return False
    return wanted


def fresh_vhost(amqp_base: str, management: Management) -> Iterator[RabbitVhost]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    devstack.create_vhost(name, management)
    try:
        yield RabbitVhost(f"{amqp_base}/{quote(name, safe='')}", name, management)
    finally:
        devstack.delete_vhost(name, management)


@pytest.fixture(scope="session")
def rabbitmq_vhost(rabbitmq_server: RabbitVhost) -> RabbitVhost:
    """The session's vhost; tests/integration narrows it to one per module."""
    return rabbitmq_server


# Every quorum queue reserves about three of RabbitMQ's file handles, and a node started with
# the usual `ulimit -n 1024` has 927: past about 300 live quorum queues, creating a vhost or a
# queue waits for handles forever (the node itself stays up). A pipeline declares 68 queues, so
# fixtures delete what they declared as soon as they can: a vhost per integration module, a
# pipeline per deadline test.
@pytest.fixture(scope="session")
def rabbitmq_server(use_testcontainers: bool) -> Iterator[RabbitVhost]:
    if not use_testcontainers:
        devstack.ensure_rabbitmq(LOCAL_AMQP_URL + "/")
        yield from fresh_vhost(LOCAL_AMQP_URL, Management.from_env())
        return

    # Imported only when Docker is in play, so this file loads without testcontainers.
    # Generic containers rather than RabbitMqContainer & co: those pull extra client
    # libraries (pika) that are not project dependencies, and moved modules across 4.x.
    from testcontainers.core.container import DockerContainer

    image = DockerContainer("rabbitmq:3.10-management").with_exposed_ports(5672, 15672)
    container = image.start()
    try:
        host = container.get_container_host_ip()
        amqp_port = int(container.get_exposed_port(5672))
        management = Management(url=f"http://{host}:{container.get_exposed_port(15672)}")
        devstack.wait_until(
            lambda: devstack.tcp_open(host, amqp_port) and management.answering(),
            CONTAINER_START_TIMEOUT,
            "RabbitMQ container",
        )
        # The image ships management but not shovel, which the pipeline tooling uses.
        container.exec(["rabbitmq-plugins", "enable", *PLUGINS])
        yield from fresh_vhost(f"amqp://guest:guest@{host}:{amqp_port}", management)
    finally:
        container.stop()


@pytest.fixture(scope="session")
def amqp_url(rabbitmq_vhost: RabbitVhost) -> str:
    return rabbitmq_vhost.url


def _with_direct_connection(url: str) -> str:
    parts = urlsplit(url)
    # Multi-host (replica set seed list) URLs must not carry directConnection.
    if "," in parts.netloc or "directconnection" in parts.query.lower():
        return url
    query = f"{parts.query}&directConnection=true" if parts.query else "directConnection=true"
    return urlunsplit(parts._replace(path=parts.path or "/", query=query))


def _mongo_container() -> Iterator[MongoServer]:
    from testcontainers.core.container import DockerContainer

    # A single-node replica set like compose's `rs0`: transactions and change streams need it.
    image = DockerContainer("mongo:7").with_command("--replSet rs0 --bind_ip_all")
    container = image.with_exposed_ports(27017).start()
    try:
        host = container.get_container_host_ip()
        url = f"mongodb://{host}:{container.get_exposed_port(27017)}/?directConnection=true"
        devstack.wait_until(lambda: devstack.mongo_reachable(url), CONTAINER_START_TIMEOUT, url)
        client: MongoClient[dict[str, object]] = MongoClient(url)
        member = {"_id": 0, "host": "127.0.0.1:27017"}
        client.admin.command("replSetInitiate", {"_id": "rs0", "members": [member]})
        devstack.wait_until(
            lambda: bool(client.admin.command("hello").get("isWritablePrimary")),
            CONTAINER_START_TIMEOUT,
            "replica set primary",
        )
        client.close()
        yield MongoServer(url, None)
    finally:
        container.stop()


@pytest.fixture(scope="session")
def mongo_server(
    use_testcontainers: bool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MongoServer]:
    external = os.environ.get("TEST_MONGO_URL")
    if external:
        if devstack.mongo_reachable(external):
            yield MongoServer(_with_direct_connection(external), None)
            return
        warnings.warn(f"TEST_MONGO_URL={external} unreachable; own MongoDB", stacklevel=2)
    if use_testcontainers:
        yield from _mongo_container()
        return
    # On disk, not :memory:, so a chaos test can restart the process and find its data.
    workdir = tmp_path_factory.mktemp("secantus")
    handle = devstack.start_secantus(
        port=free_port(), storage_path=workdir / "data", log_path=workdir / "secantusd.log"
    )
    try:
        yield MongoServer(handle.url, handle)
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def mongo_url(mongo_server: MongoServer) -> str:
    return mongo_server.url


@pytest.fixture(scope="session")
def redis_url(use_testcontainers: bool) -> Iterator[str]:
    def flushed(url: str) -> str:
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
        return url

    if not use_testcontainers:
        devstack.ensure_redis(LOCAL_REDIS_URL)
        yield flushed(LOCAL_REDIS_URL)  # DB 15 keeps tests away from the dev stack's DB 0
        return

    from testcontainers.core.container import DockerContainer

    container = DockerContainer("redis:7").with_exposed_ports(6379).start()
    try:
        host = container.get_container_host_ip()
        url = f"redis://{host}:{container.get_exposed_port(6379)}/15"
        devstack.wait_until(lambda: devstack.redis_answers(url), CONTAINER_START_TIMEOUT, url)
        yield flushed(url)
    finally:
        container.stop()


@pytest.fixture(scope="session")
async def mongo(mongo_url: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """A client of the session's MongoDB, for tests that check what a pipeline stored."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client
    await client.close()


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """One HTTP client for the tests that talk to a pipeline's services."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        yield client


@pytest.fixture(scope="session")
def nats_url() -> str:
    """A NATS server with JetStream (started locally if none answers)."""
    devstack.ensure_nats(LOCAL_NATS_URL, NATS_STORE_DIR)
    return LOCAL_NATS_URL


@pytest.fixture(scope="session")
def bus_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The event bus's own Redis (AOF on): the one TEST_BUS_REDIS_URL names (started if none
    answers), else one of this session's own, stopped by its PID at the end. A daemon left
    behind kept writing its AOF into the directory of a clone that was deleted, and the next
    run on the machine used it."""
    if SHARED_BUS_REDIS_URL is not None:
        ensure_bus_redis(SHARED_BUS_REDIS_URL, BUS_REDIS_DATA)
        yield SHARED_BUS_REDIS_URL
        return
    server = BusRedisProcess(tmp_path_factory.mktemp("bus-redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def delete_namespace(redis_url: str, namespace: str) -> None:
    """Delete every key of a bus namespace (a test's streams, schedules, dead letters)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def bus_namespace(bus_redis_url: str) -> Iterator[str]:
    namespace = f"t-{uuid.uuid4().hex[:8]}:"
    yield namespace
    delete_namespace(bus_redis_url, namespace)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans recorded in memory while the test runs; the previous provider comes back after."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = tracing.use_tracer_provider(provider)
    yield exporter
    tracing.use_tracer_provider(previous)
    provider.shutdown()
