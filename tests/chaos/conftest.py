"""A fresh, isolated pipeline per chaos test (own vhost, own on-disk MongoDB)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.devstack.cluster import LocalCluster
from tests.chaos.harness import ChaosPipeline

MakeChaos = Callable[..., ChaosPipeline]


@pytest.fixture
def make_chaos(amqp_url: str, redis_url: str, tmp_path: Path) -> Iterator[MakeChaos]:
    """`amqp_url` is requested so the broker is ensured; each run makes its own vhost."""
    started: list[ChaosPipeline] = []

    def make(**options: Any) -> ChaosPipeline:
        chaos = ChaosPipeline(amqp_url, redis_url, tmp_path, **options)
        started.append(chaos)
        chaos.start()
        return chaos

    yield make
    for chaos in started:
        chaos.stop()


@pytest.fixture
def private_rabbit(tmp_path: Path) -> Iterator[LocalCluster]:
    """A RabbitMQ node of this test's own (ps1@localhost, AMQP 5704), to stop and restart:
    the shared default node is never stopped."""
    with LocalCluster(tmp_path / "rabbit", size=1, amqp_base=5703, prefix="ps") as node:
        yield node
