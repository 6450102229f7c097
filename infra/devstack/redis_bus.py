"""The event bus Redis (`EVENT_BUS=redis`): a server of its own, never the cache/session one,
with append-only persistence fsynced at every write (`appendfsync always`: an acknowledged
event survives a crash of Redis or of the machine; see infra.messaging.redisbus)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis

from infra.devstack._util import (
    DevstackError,
    Outcome,
    free_port,
    host_port,
    log,
    stop_child,
    wait_until,
)
from infra.devstack.redis_server import redis_answers, start_local_redis

DEFAULT_BUS_PORT = 6380
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


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


@dataclass
class BusRedisProcess:
    """A bus Redis of a test's or a bench run's own: in the foreground, so its PID is the
    starter's to stop or kill, on a free port, with its AOF and log in `data_dir`. `start`
    again after a stop or a kill brings it back on the same port and data."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    appendfsync: str = "always"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and return once it answers (bounded)."""
        self.data_dir = self.data_dir.resolve()  # redis-server changes to --dir first
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "redis.log").open("ab") as output:
            self.process = subprocess.Popen(
                bus_redis_command(self.port, self.data_dir, self.appendfsync),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )

        def ready() -> bool:
            # Ready when the server answering is this process: never by reaching somebody
            # else's on the port (ours then fails to bind it and exits).
            if self.process is None or self.process.poll() is not None:
                raise DevstackError(f"bus Redis exited during startup; see {output.name}")
            return _answering_pid(self.url) == self.process.pid

        try:
            wait_until(ready, START_TIMEOUT_S, f"bus Redis {self.url}", interval=0.05)
        except DevstackError:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """SIGTERM (Redis flushes its AOF and exits), SIGKILL past STOP_TIMEOUT_S."""
        if self.process is not None:
            stop_child(self.process, STOP_TIMEOUT_S)
            self.process = None


def _answering_pid(redis_url: str) -> int | None:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=1)
    try:
        return int(client.info("server")["process_id"])
    except redis.RedisError:
        return None
    finally:
        client.close()
