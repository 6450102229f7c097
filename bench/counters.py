"""Round-trip counters installed from outside the service code (bench.instrumented only).

- MongoDB: a global PyMongo CommandListener; every started command is one round trip
  (`insert`, `find`, `commitTransaction`, ...). Heartbeats are server-monitoring events, not
  commands, so they are not counted, as they cost the server little and are not per order.
- Redis: AbstractConnection.send_packed_command is where redis-py writes to the socket: one
  call per single command and one per pipeline, so it counts round trips, not commands
  (a pipeline of three EVALSHAs is one). Patched on the class, in this process only.
- RabbitMQ: aio_pika.Exchange.publish, which every publish of the runtime goes through
  (RobustExchange inherits it), counted per exchange.

The counts are served as JSON on 127.0.0.1:<port> from a daemon thread, so the bench can
snapshot them between phases without touching the service's event loop.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pymongo import monitoring

_lock = threading.Lock()
_counts: Counter[str] = Counter()
# First command name of a RESP array: *<n>\r\n$<len>\r\n<NAME>\r\n
_RESP_NAME = re.compile(rb"^\*\d+\r\n\$\d+\r\n([A-Za-z]+)")
PSP_LEDGER_COLLECTIONS = frozenset({"gateway_charges"})


def count(key: str, n: int = 1) -> None:
    # The server thread copies the Counter while the loop thread increments it; the lock
    # keeps the copy from seeing a dict that changes size under it.
    with _lock:
        _counts[key] += n


def snapshot() -> dict[str, int]:
    with _lock:
        return dict(_counts)


class _MongoCounter(monitoring.CommandListener):
    """Counts each command and sums its round-trip time (client side: the server's work plus
    any queueing in front of it), keyed `<command>.<collection>`."""

    def __init__(self) -> None:
        self._keys: dict[tuple[int, int], str] = {}  # (connection id hash, request id) -> key

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        target = event.command.get(name)
        collection = target if isinstance(target, str) else ""
        if name == "find" and "outbox_at" in (event.command.get("filter") or {}):
            name = "find[outbox sweep]"  # the relay's periodic sweep, told apart from reads
        key = f"{name}.{collection}" if collection else name
        self._keys[(hash(event.connection_id), event.request_id)] = key
        # The simulated payment provider's ledger stands for a PSP's own database: counted
        # apart, as `psp`, not as the pipeline's MongoDB round trips.
        kind = "psp" if collection in PSP_LEDGER_COLLECTIONS else "mongo"
        count(kind)
        count(f"{kind}.{key}")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._timed(event.connection_id, event.request_id, event.duration_micros)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        key = self._timed(event.connection_id, event.request_id, event.duration_micros)
        count(f"mongo_failed.{key}")

    def _timed(self, connection_id: object, request_id: int, micros: int) -> str:
        key = self._keys.pop((hash(connection_id), request_id), "?")
        count("mongo_us", micros)
        count(f"mongo_us.{key}", micros)
        return key


def _redis_name(command: Any) -> str:
    first = command if isinstance(command, bytes | str) else next(iter(command), b"")
    raw = first.encode() if isinstance(first, str) else bytes(first)
    match = _RESP_NAME.match(raw)
    return match.group(1).decode().upper() if match else "?"


def install_redis() -> None:
    from redis.asyncio.connection import AbstractConnection

    original = AbstractConnection.send_packed_command

    async def send_packed_command(
        self: AbstractConnection, command: Any, check_health: bool = True
    ) -> None:
        # A list of several RESP arrays is a pipeline: one round trip for all of them.
        single = isinstance(command, bytes | str)
        parts = [command] if single else list(command)  # an iterator would be used up here
        count("redis")
        label = "PIPELINE" if sum(_count_arrays(p) for p in parts) > 1 else _redis_name(parts)
        count(f"redis.{label}")
        await original(self, command if single else parts, check_health)

    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]


def _count_arrays(part: bytes | str) -> int:
    data = part.encode() if isinstance(part, str) else part
    # A bulk string may itself begin with "*": count only array headers at line starts.
    return int(data.startswith(b"*")) + data.count(b"\r\n*")


def install_amqp() -> None:
    """Counts AMQP publishes where every path ends, aiormq's basic_publish: the runtime's
    Broker.publish writes its properties straight to it, aio-pika's Exchange.publish (retry
    and dead-letter copies) goes through it."""
    from aiormq.channel import Channel

    original = Channel.basic_publish

    async def basic_publish(self: Channel, body: bytes, **kw: Any) -> Any:
        count("amqp")
        count(f"amqp.publish.{kw.get('exchange') or '(default)'}")
        return await original(self, body, **kw)

    Channel.basic_publish = basic_publish  # type: ignore[method-assign]


def install_all() -> None:
    monitoring.register(_MongoCounter())
    install_redis()
    install_amqp()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(snapshot()).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the service's stderr is its JSON log; keep it clean


def serve(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    threading.Thread(target=server.serve_forever, name="bench-counts", daemon=True).start()
    return server
