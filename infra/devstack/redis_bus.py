"""The event bus Redis (`EVENT_BUS=redis`): a server of its own, never the cache/session one,
with append-only persistence fsynced at every write (`appendfsync always`: an acknowledged
event survives a crash of Redis or of the machine; see infra.messaging.redisbus)."""

from __future__ import annotations

from pathlib import Path

import redis

from infra.devstack._util import DevstackError, Outcome, host_port, log
from infra.devstack.redis_server import redis_answers, start_local_redis

DEFAULT_BUS_PORT = 6380


def bus_redis_command(port: int, data_dir: Path, appendfsync: str = "always") -> list[str]:
    """redis-server with its AOF in `data_dir`, no RDB snapshots, no eviction."""
    return [
        "redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        appendfsync,
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
    ]


def is_durable(redis_url: str) -> bool:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return client.config_get("appendonly").get("appendonly") == "yes"
    finally:
        client.close()


def ensure_bus_redis(redis_url: str, data_dir: Path) -> Outcome:
    """A Redis with its AOF on at `redis_url`: "running" if one answers (refused if it has no
    AOF), else a local one started (daemonized, left running) with its files in `data_dir`."""
    host, port = host_port(redis_url, DEFAULT_BUS_PORT)
    if redis_answers(redis_url):
        if not is_durable(redis_url):
            raise DevstackError(
                f"the Redis at {host}:{port} has no append-only file: not an event bus "
                "(EVENT_BUS_URL must name a Redis of its own, with appendonly yes)"
            )
        log(f"event bus Redis already running at {host}:{port}")
        return "running"
    data_dir = data_dir.resolve()  # redis-server changes to --dir before opening its files
    data_dir.mkdir(parents=True, exist_ok=True)
    options = [*bus_redis_command(port, data_dir)[1:], "--daemonize", "yes"]
    options += ["--pidfile", str(data_dir / "redis.pid"), "--logfile", str(data_dir / "redis.log")]
    return start_local_redis(redis_url, options, "event bus Redis")
