"""A consumer process that takes one delivery and holds it until it is killed: a consumer
that dies mid-handler, for the Redis bus's crash-redelivery tests (run with `python -m`).

Prints `holding <event id>` once its handler has the delivery.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from contracts.envelope import Envelope
from contracts.events import OrderPlaced
from infra.settings import AmqpSettings
from tests.integration.redis_backend import redis_transport


async def hold(url: str, namespace: str, service: str) -> None:
    transport = redis_transport(url, service, namespace, [], AmqpSettings())
    await transport.connect()

    async def handler(envelope: Envelope, event: Any) -> None:
        print(f"holding {envelope.event_id}", flush=True)
        await asyncio.Event().wait()  # until SIGKILL

    await transport.subscriber.subscribe(OrderPlaced, handler)
    print("subscribed", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(hold(*sys.argv[1:4]))
