"""infra/deploy/rabbitmq/rabbitmq.conf on a real RabbitMQ node: the broker takes a body of
exactly the consumers' limit and refuses one byte more at publish (issue 11 item 10).

The node is a scratch one of this test (tests/deploy/scratch_rabbitmq.py): the shared
development node is never reconfigured. Its config is the deploy file's own lines, minus the
keys of plugins this node does not run (management, prometheus)."""

from __future__ import annotations

from pathlib import Path

import aio_pika
import aiormq
import pytest

from infra.messaging import codec
from tests.deploy import scratch_rabbitmq
from tests.deploy.manifests import INFRA

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.security,
    pytest.mark.skipif(not scratch_rabbitmq.available(), reason="rabbitmq-server not installed"),
]
CONF = INFRA / "deploy" / "rabbitmq" / "rabbitmq.conf"
PLUGIN_KEYS = ("management.", "prometheus.")


def core_config() -> str:
    lines = [
        line
        for line in CONF.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    kept = [line for line in lines if not line.strip().startswith(PLUGIN_KEYS)]
    assert any(line.startswith("max_message_size") for line in kept)
    return "\n".join(kept)


async def test_the_broker_refuses_bodies_over_the_consumers_limit(tmp_path: Path) -> None:
    with scratch_rabbitmq.scratch_node(core_config(), tmp_path) as url:
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue("", exclusive=True)
            largest = b"x" * codec.MAX_BODY_BYTES
            await channel.default_exchange.publish(aio_pika.Message(largest), queue.name)
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="max size"):
                await channel.default_exchange.publish(aio_pika.Message(largest + b"x"), queue.name)
            # What the broker took is what a consumer reads back whole.
            channel = await connection.channel()
            queue = await channel.get_queue(queue.name)
            message = await queue.get(timeout=10)
            assert message is not None
            assert len(message.body) == codec.MAX_BODY_BYTES
        finally:
            await connection.close()
