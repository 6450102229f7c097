"""A fresh, isolated pipeline per chaos test (own vhost, own on-disk MongoDB)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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
