"""Failover across the nodes of a RabbitMQ cluster, on top of aio-pika's robust connection.

`AMQP_URL` may name several nodes, comma-separated (credentials and vhost may differ per URL;
a comma inside a password must be percent-encoded, `%2C`). aio-pika's `RobustConnection`
restores channels, topology and consumers after a reconnect but retries the one URL it was
given forever, so a dead node stops the process until it comes back. `FailoverConnection`
keeps all of that machinery and only changes where each (re)connection attempt goes:

- every attempt goes to the next URL of the list, starting at a random one per process, so
  replicas of a service spread over the nodes and a lost node is left for the next one;
- between failed attempts it waits `base_s` while a round over the list is not over, then
  doubles per round up to `max_s` (a bounded backoff: a cluster that is wholly down is
  retried every `max_s`, never in a tight loop);
- a heartbeat (`AMQP_HEARTBEAT_S`, default 3 s) is added to every URL that does not set one:
  aiormq drops a connection that received no frame for (heartbeat + 1) x 3 s, checked every
  heartbeat / 2, so a frozen (SIGSTOPed) node is left within ~13 s.

The pure part (parsing, rotation, backoff) is separate from the connection class so it can be
unit-tested without a broker.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

from aio_pika import RobustConnection
from yarl import URL

log = logging.getLogger(__name__)

SCHEMES = frozenset({"amqp", "amqps"})


def parse_amqp_urls(value: str) -> list[str]:
    """The URLs of a comma-separated AMQP_URL, in order; refuses anything but amqp(s) URLs
    with a host, and duplicates."""
    urls = [part.strip() for part in value.split(",")]
    if not any(urls):
        raise ValueError("AMQP_URL is empty")
    seen: set[str] = set()
    for url in urls:
        parsed = URL(url)
        if parsed.scheme not in SCHEMES or not parsed.host:
            raise ValueError(f"not an amqp:// or amqps:// URL with a host: {_redacted(url)!r}")
        if url in seen:
            raise ValueError(f"AMQP_URL names {_redacted(url)!r} twice")
        seen.add(url)
    return urls


def with_heartbeat(url: str, heartbeat_s: int) -> URL:
    """`url` with `heartbeat` in its query unless it sets one itself (the URL wins)."""
    parsed = URL(url)
    if "heartbeat" in parsed.query:
        return parsed
    return parsed.update_query(heartbeat=heartbeat_s)


@dataclass
class Rotation:
    """Which URL the next attempt goes to, and how long to wait after a failed one."""

    urls: list[URL]
    base_s: float = 0.5
    max_s: float = 5.0
    rng: random.Random = field(default_factory=random.Random)
    _next: int = -1
    _failures: int = 0

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("no broker URL")
        # A random start per process, so replicas do not all pile onto the first node.
        self._next = self.rng.randrange(len(self.urls))

    def take(self) -> URL:
        """The URL of the next attempt; the one after it next time."""
        url = self.urls[self._next]
        self._next = (self._next + 1) % len(self.urls)
        return url

    def failed(self) -> float:
        """Record a failed attempt; the delay before the next one."""
        self._failures += 1
        completed_rounds = (self._failures - 1) // len(self.urls)
        return float(min(self.max_s, self.base_s * 2**completed_rounds))

    def succeeded(self) -> None:
        self._failures = 0


class FailoverConnection(RobustConnection):
    """A `RobustConnection` whose every (re)connection attempt takes the next node's URL."""

    def __init__(self, rotation: Rotation, **kwargs: Any) -> None:
        self.rotation = rotation
        first = rotation.take()
        super().__init__(first, **kwargs)
        # The first attempt goes to `first`; later ones take their own URL from the rotation.
        self._first_attempt = True
        self.reconnect_interval = rotation.base_s

    # RobustConnection's connection factory calls this (name-mangled) method for every
    # attempt, then sleeps `reconnect_interval`: the one place to choose the node and the
    # wait. Overriding it keeps aio-pika's restore of channels, topology and consumers.
    async def _RobustConnection__connect_transport(self) -> None:
        if not self._first_attempt:
            self.url = self.rotation.take()
        self._first_attempt = False
        connect_transport = RobustConnection._RobustConnection__connect_transport  # type: ignore[attr-defined]
        try:
            await connect_transport(self)
        except BaseException as error:
            self.reconnect_interval = self.rotation.failed()
            log.warning(
                "RabbitMQ at %s not reachable (%s); next attempt in %.1f s",
                _redacted(str(self.url)),
                type(error).__name__,
                self.reconnect_interval,
            )
            raise
        self.rotation.succeeded()
        self.reconnect_interval = self.rotation.base_s
        log.info("connected to RabbitMQ at %s", _redacted(str(self.url)))


if not hasattr(RobustConnection, "_RobustConnection__connect_transport"):  # pragma: no cover
    raise ImportError("aio-pika changed RobustConnection: FailoverConnection needs updating")


def _redacted(url: str) -> str:
    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else url
