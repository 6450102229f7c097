"""Shell entry point: `python -m infra.devstack <command>`.

Commands exit 0 on success and 1 otherwise, so the bash scripts can branch on them:
  ensure            Redis for REDIS_URL and the event bus: RabbitMQ (+ management/shovel/
                    prometheus plugins) for AMQP_URL, or with EVENT_BUS=nats a NATS JetStream
                    server for EVENT_BUS_URL instead; with --test-tools also promtool,
                    prometheus, kubectl
  mongo-reachable   does MONGO_URL (or the given URL) answer ping?
  docker-available  does a Docker engine (not just the client) answer?
  secantus-url PORT the URL for a SecantusDB we start on PORT (retryable writes off: see mongo.py)
  wait-mongo URL    wait until URL answers ping
  wait-http URL     wait until GET URL returns 200 (used for each service's /ready)
  prometheus-config DIR SERVICE=HOST:PORT...
                    write infra/deploy/prometheus's config and rules, rewritten for these
                    local targets, into DIR; print the `prometheus` command line to run
The wait commands take --timeout SECONDS and --pid PID (give up early if that process died).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from infra.devstack import (
    DEFAULT_AMQP_URL,
    DEFAULT_MONGO_URL,
    DEFAULT_REDIS_URL,
    DevstackError,
    docker_engine_available,
    ensure_nats,
    ensure_rabbitmq,
    ensure_redis,
    mongo_reachable,
    secantus_url,
    wait_until,
)
from infra.devstack._util import Outcome
from infra.devstack.nats_server import DEFAULT_NATS_URL
from infra.devstack.prometheus import prometheus_command, write_local_files
from infra.devstack.redis_bus import ensure_bus_redis
from infra.devstack.tools import ensure_test_tools
from infra.settings import DEFAULT_BUS_URLS


def _ensure(args: argparse.Namespace) -> int:
    started: list[str] = []
    ensures: dict[str, Callable[[], Outcome]] = {"redis": lambda: ensure_redis(args.redis_url)}
    if args.event_bus == "rabbitmq":  # a pipeline on another bus never talks to RabbitMQ
        ensures = {"rabbitmq": lambda: ensure_rabbitmq(args.amqp_url), **ensures}
    for name, ensure in ensures.items():
        outcome = ensure()
        print(f"{name}: {outcome}", flush=True)
        if outcome != "running":
            started.append(name)
    if args.event_bus == "nats":
        outcome = ensure_nats(args.event_bus_url or DEFAULT_NATS_URL, args.nats_store_dir)
        print(f"nats: {outcome}", flush=True)
        if outcome != "running":
            started.append("nats")
    if args.event_bus == "redis":
        # The event bus's own Redis, with its AOF on (never the cache's).
        bus_url = args.event_bus_url or DEFAULT_BUS_URLS["redis"]
        outcome = ensure_bus_redis(bus_url, Path(args.data_dir) / "bus-redis")
        print(f"bus-redis: {outcome}", flush=True)
        if outcome != "running":
            started.append("bus-redis")
    if args.test_tools:
        print(f"test tools: {ensure_test_tools()}", flush=True)
    # `up` reads this to tell the user, on exit, which servers it left running.
    if args.started_file:
        Path(args.started_file).write_text("".join(f"{name}\n" for name in started))
    return 0


def _http_200(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _pid_alive(pid: int) -> bool:
    # A dead child of our caller stays a zombie until the shell reaps it, so kill(pid, 0)
    # alone would call it alive; /proc tells the truth.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait(check: Callable[[], bool], args: argparse.Namespace, what: str) -> None:
    def ready() -> bool:
        if args.pid is not None and not _pid_alive(args.pid):
            raise DevstackError(f"process {args.pid} exited while waiting for {what}")
        return check()

    wait_until(ready, args.timeout, what)


def _prometheus_config(args: argparse.Namespace) -> int:
    targets = dict(target.split("=", 1) for target in args.targets)
    config = write_local_files(args.workdir, targets, args.interval)
    print(shlex.join(prometheus_command(config, args.workdir / "data", args.port)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.devstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ensure = sub.add_parser("ensure", help="ensure RabbitMQ and Redis are up")
    ensure.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", DEFAULT_AMQP_URL))
    ensure.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    ensure.add_argument("--event-bus", default=os.environ.get("EVENT_BUS", "rabbitmq"))
    ensure.add_argument("--event-bus-url", default=os.environ.get("EVENT_BUS_URL", ""))
    ensure.add_argument("--nats-store-dir", type=Path, default=Path(".data/nats"))
    ensure.add_argument(
        "--test-tools",
        action="store_true",
        help="install the tools of the deploy, ops and browser tests if missing",
    )
    ensure.add_argument("--started-file", help="write the names of servers we started here")
    ensure.add_argument("--data-dir", default=".data", help="the bus Redis's AOF goes here")

    reach = sub.add_parser("mongo-reachable", help="exit 0 if MongoDB answers ping")
    reach.add_argument("url", nargs="?", default=os.environ.get("MONGO_URL", DEFAULT_MONGO_URL))

    sub.add_parser("docker-available", help="exit 0 if a Docker engine answers")

    secantus = sub.add_parser("secantus-url", help="print the URL of a SecantusDB we start")
    secantus.add_argument("port", type=int)

    for name in ("wait-mongo", "wait-http"):
        wait = sub.add_parser(name)
        wait.add_argument("url")
        wait.add_argument("--timeout", type=float, default=60.0)
        wait.add_argument("--pid", type=int, help="fail as soon as this process is gone")

    local = sub.add_parser("prometheus-config", help="local Prometheus config and command")
    local.add_argument("workdir", type=Path)
    local.add_argument("targets", nargs="+", help="service=host:port, one per service")
    local.add_argument("--port", type=int, default=9090)
    local.add_argument("--interval", default="5s")

    args = parser.parse_args(argv)
    try:
        if args.command == "ensure":
            return _ensure(args)
        if args.command == "mongo-reachable":
            return 0 if mongo_reachable(args.url) else 1
        if args.command == "docker-available":
            return 0 if docker_engine_available() else 1
        if args.command == "secantus-url":
            print(secantus_url(args.port))
            return 0
        if args.command == "prometheus-config":
            return _prometheus_config(args)
        if args.command == "wait-mongo":
            _wait(lambda: mongo_reachable(args.url, 500), args, args.url)
        else:
            _wait(lambda: _http_200(args.url), args, f"200 from {args.url}")
        return 0
    except DevstackError as exc:
        print(f"[devstack] error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
