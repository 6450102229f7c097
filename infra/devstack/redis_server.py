"""Redis: make sure the server at REDIS_URL answers PING, starting a local one if needed."""

from __future__ import annotations

import shlex

import redis

from infra.devstack._util import (
    DevstackError,
    Outcome,
    host_port,
    install_server,
    is_local,
    log,
    run,
    wait_until,
)

START_TIMEOUT = 30.0


def redis_answers(redis_url: str) -> bool:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def ensure_redis(redis_url: str) -> Outcome:
    """Return "running" if PING already works, else install/start a local throwaway server."""
    host, port = host_port(redis_url, 6379)
    if redis_answers(redis_url):
        log(f"Redis already running at {host}:{port}")
        return "running"
    # No persistence: this is a cache/dedup store for development and tests.
    options = ["--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port)]
    return start_local_redis(redis_url, [*options, "--save", "", "--appendonly", "no"], "Redis")


def start_local_redis(redis_url: str, options: list[str], what: str) -> Outcome:
    """Start `redis-server *options` (daemonized) for `redis_url`, installing it if missing;
    wait for PING. Only on this machine."""
    host, port = host_port(redis_url, 6379)
    if not is_local(host):
        raise DevstackError(f"{what} at {host}:{port} is not answering PING")
    outcome, answering = install_server("redis-server", lambda: redis_answers(redis_url))
    if answering:
        log(f"{what} installed and running at {host}:{port}")
        return outcome
    cmd = ["redis-server", *options]
    log(f"starting {shlex.join(cmd)}")
    result = run(cmd, timeout=15)
    if result.returncode != 0:
        raise DevstackError(f"redis-server failed to start:\n{result.stdout}{result.stderr}")
    wait_until(lambda: redis_answers(redis_url), START_TIMEOUT, f"{what} PING at {host}:{port}")
    log(f"{what} started at {host}:{port} (left running; stop: redis-cli -p {port} shutdown)")
    return outcome
