"""A fresh, isolated pipeline per chaos test (own vhost, or own nats-server or bus Redis, own
on-disk MongoDB). Tests that run on another bus than RabbitMQ parametrize `bus`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from infra.devstack.cluster import LocalCluster
from tests.chaos.buses import BusServer
from tests.chaos.harness import LOCAL_BROKER, ChaosPipeline
from tests.chaos.nats_bus import PrivateNats
from tests.chaos.redis_bus import PrivateRedis

MakeChaos = Callable[..., ChaosPipeline]
# The buses that run on a server of the test's own, by their fixture.
PRIVATE_SERVERS = {"nats": "private_nats", "redis": "private_redis"}


@pytest.fixture
def bus() -> str:
    """The event bus of the chaos run: RabbitMQ unless the test parametrizes it."""
    return "rabbitmq"


@pytest.fixture
def make_chaos(
    request: pytest.FixtureRequest, bus: str, redis_url: str, tmp_path: Path
) -> Iterator[MakeChaos]:
    """On RabbitMQ each pipeline gets a vhost of its own on the chaos suite's node (or on the
    test's private node, where the test passes its options); on NATS and Redis the pipeline
    runs on the test's private server."""
    server: BusServer | None = None
    defaults: dict[str, Any] = {}
    if bus in PRIVATE_SERVERS:
        server = private_server(request, bus)
    else:
        defaults = on_private_node(request.getfixturevalue("chaos_rabbit"))
    started: list[ChaosPipeline] = []

    def make(**options: Any) -> ChaosPipeline:
        settings = {**defaults, **options}
        chaos = ChaosPipeline(LOCAL_BROKER, redis_url, tmp_path, server=server, **settings)
        started.append(chaos)
        chaos.start()
        return chaos

    yield make
    for chaos in started:
        chaos.stop()


@pytest.fixture(scope="session")
def chaos_rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The chaos suite's own RabbitMQ node (cs1@localhost, AMQP 5706). Its pipelines, 68 quorum
    queues each, stay off the shared node: infra/bin/test runs the fault layers beside the
    others, and the shared node's file-handle budget (about 300 live quorum queues under
    `ulimit -n 1024`) is theirs. Being the suite's alone, with one pipeline on it at a time,
    it is also the node the broker faults stop and start again (a node per such test cost
    about 15 s of boot and stop each)."""
    base = tmp_path_factory.mktemp("chaos-rabbit")
    with LocalCluster(base, size=1, amqp_base=5705, prefix="cs") as node:
        yield node


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    """A nats-server with JetStream of this test's own, on a free port with its own store
    directory: the shared one on 4222 is never stopped."""
    server = PrivateNats(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A bus Redis of this test's own (AOF, appendfsync always), on a free port with its own
    directory: neither the cache's Redis nor the shared bus Redis is ever stopped."""
    server = PrivateRedis(tmp_path / "bus-redis")
    server.start()
    yield server
    server.stop()


def private_server(request: pytest.FixtureRequest, bus: str) -> BusServer:
    server: BusServer = request.getfixturevalue(PRIVATE_SERVERS[bus])
    return server


class PrivateBus(Protocol):
    def options(self) -> dict[str, Any]:
        """make_chaos options that put the pipeline on this server."""
        ...

    async def restart(self, outage_s: float) -> None:
        """Stop the server, wait `outage_s`, start it again and wait until it is up."""
        ...


@pytest.fixture
def private_bus(request: pytest.FixtureRequest, bus: str) -> PrivateBus:
    """The test's bus on a server to restart, never a shared one: on NATS and Redis a server
    of the test's own (request this fixture before make_chaos, so that it stops after the
    pipeline), on RabbitMQ the chaos suite's node."""
    if bus in PRIVATE_SERVERS:
        return PrivateServerBus(private_server(request, bus))
    return PrivateRabbitNode(request.getfixturevalue("chaos_rabbit"))


@dataclass
class PrivateServerBus:
    server: BusServer

    def options(self) -> dict[str, Any]:
        return {}  # make_chaos puts a NATS or Redis run on its private server already

    async def restart(self, outage_s: float) -> None:
        await self.server.restart(outage_s)


@dataclass
class PrivateRabbitNode:
    cluster: LocalCluster

    def options(self) -> dict[str, Any]:
        return on_private_node(self.cluster)

    async def restart(self, outage_s: float) -> None:
        await restart_app(self.cluster, outage_s)


def on_private_node(private_rabbit: LocalCluster) -> dict[str, Any]:
    """make_chaos options that put the pipeline on a node of the suite's own, not the shared
    one."""
    return {
        "brokers": [url.rsplit("/", 1)[0] for url in private_rabbit.amqp_urls("")],
        "management": private_rabbit.node(1).management,
    }


async def restart_app(private_rabbit: LocalCluster, outage_s: float) -> None:
    """Stop the node's app for `outage_s`, then start it and wait until it is up."""
    node = private_rabbit.node(1)
    await asyncio.to_thread(node.ctl, "stop_app")
    try:
        await asyncio.sleep(outage_s)
    finally:
        await asyncio.to_thread(node.ctl, "start_app")
        await asyncio.to_thread(node.ctl, "await_startup")
