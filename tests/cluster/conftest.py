"""One private 3-node RabbitMQ cluster for the session (never the default node), and a fresh
chaos pipeline on it per test, its services given all three nodes in AMQP_URL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.devstack.cluster import LocalCluster
from tests.chaos.harness import ChaosPipeline

MakeClusterChaos = Callable[..., ChaosPipeline]


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    started = time.monotonic()
    with LocalCluster(tmp_path_factory.mktemp("rabbit-cluster"), size=3) as cluster:
        print(f"\n3-node cluster up in {time.monotonic() - started:.0f} s")
        yield cluster


@pytest.fixture
def make_cluster_chaos(
    rabbit_cluster: LocalCluster, redis_url: str, tmp_path: Path
) -> Iterator[MakeClusterChaos]:
    started: list[ChaosPipeline] = []

    def make(**options: Any) -> ChaosPipeline:
        chaos = ChaosPipeline(
            "",
            redis_url,
            tmp_path,
            management=rabbit_cluster.management,
            brokers=[u.rsplit("/", 1)[0] for u in rabbit_cluster.amqp_urls("")],
            **options,
        )
        started.append(chaos)
        chaos.start()
        return chaos

    yield make
    # A test may leave a node killed or frozen: back to three healthy nodes first, as deleting
    # a vhost of quorum queues with a member down takes minutes; the next test needs them too.
    rabbit_cluster.heal()
    for chaos in started:
        chaos.stop()
