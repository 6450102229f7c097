"""What `bench micro` compares, read back from the running broker and clients, not from the
arguments: a ratio between variants means something only if they publish the same messages to
the same kind of queue with the same confirms, and consume with the same prefetch.

- queues: type and durability as the management API describes them;
- publishers: whether each variant's channel has publisher confirms on (the aiormq channel);
- messages: one message of each variant fetched back from the sink queue: delivery mode, body
  size, header names;
- consumers: each relay's consumer as the management API lists it (prefetch, manual ack).
- relay inputs: one OrderPlaced fetched back from each relay's queue (its `traceparent` among
  the header names).

A difference stops the run (`Mismatch`): the figures would compare unlike things.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import aiormq

from infra.devstack import Management

CONSUMER_LISTED_S = 10.0  # the management API lists a new consumer within about a second


class Mismatch(RuntimeError):
    """The variants do not run with the same settings."""


def _vhost(amqp_url: str) -> str:
    return quote(unquote(urlsplit(amqp_url).path.lstrip("/")) or "/", safe="")


async def _get(path: str) -> Any:
    response = await asyncio.to_thread(Management.from_env().request, "GET", path)
    response.raise_for_status()
    return response.json()


async def queue_settings(amqp_url: str, queue: str) -> str:
    """`queue`'s type and durability, as the broker reports them."""
    described = await _get(f"/queues/{_vhost(amqp_url)}/{quote(queue, safe='')}")
    return f"{described.get('type')}, durable {described.get('durable')}"


async def confirms_on(channel: aio_pika.abc.AbstractChannel) -> bool:
    underlay = await channel.get_underlay_channel()
    assert isinstance(underlay, aiormq.Channel)
    return underlay.publisher_confirms


@dataclass(frozen=True)
class Received:
    """One message as the broker delivered it."""

    delivery_mode: int | None
    body_bytes: int
    headers: tuple[str, ...]

    @classmethod
    def of(cls, message: aio_pika.abc.AbstractIncomingMessage) -> Received:
        mode = message.delivery_mode
        return cls(
            int(mode) if mode is not None else None,
            len(message.body),
            tuple(sorted(message.headers or {})),
        )

    def line(self) -> str:
        persistent = "persistent" if self.delivery_mode == 2 else f"mode {self.delivery_mode}"
        return f"{persistent}, {self.body_bytes} B body, headers {', '.join(self.headers)}"


async def consumer_settings(amqp_url: str, queue: str) -> str:
    """The consumer of `queue` as the broker lists it: prefetch and ack mode."""
    path = f"/consumers/{_vhost(amqp_url)}"
    async with asyncio.timeout(CONSUMER_LISTED_S):
        while True:
            for consumer in await _get(path):
                if consumer.get("queue", {}).get("name") == queue:
                    ack = "manual ack" if consumer.get("ack_required") else "auto ack"
                    return f"prefetch {consumer.get('prefetch_count')}, {ack}"
            await asyncio.sleep(0.2)


def same(what: str, seen: dict[str, Any]) -> None:
    """Print what each variant runs with; stop the run if they differ."""
    for variant, value in seen.items():
        shown = value.line() if isinstance(value, Received) else value
        print(f"  {what:<10} {variant:<10} {shown}")
    if len({repr(v) for v in seen.values()}) > 1:
        raise Mismatch(f"the variants differ in {what}: {seen}")
