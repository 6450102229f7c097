"""Benchmarks of the order pipeline: `e2e` and `micro` (see bench/README.md and --help)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

BUS_NAMES = ("rabbitmq", "nats", "redis")


def parse_buses(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BUS_NAMES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"buses are {', '.join(BUS_NAMES)}; got {text!r}")
    return names


def _reuse(text: str) -> dict[str, str]:
    """`order=http://127.0.0.1:8000,notification=http://127.0.0.1:8003`"""
    pairs = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    missing = {"order", "notification"} - pairs.keys()
    if missing:
        raise argparse.ArgumentTypeError(f"--reuse needs {', '.join(sorted(missing))}=URL")
    return pairs


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    e2e = commands.add_parser("e2e", help="end-to-end orders/s, latency, cost per order")
    e2e.add_argument("--clients", type=int, default=8, help="closed-loop concurrent clients")
    e2e.add_argument("--orders", type=int, default=400, help="closed-loop orders")
    e2e.add_argument("--rate", type=float, help="open-loop orders/s (default: half the closed max)")
    e2e.add_argument("--duration", type=float, default=20.0, help="open-loop seconds")
    e2e.add_argument("--out", type=Path, default=Path(".data/bench"))
    # Services we are pointed at, or a pipeline the bench starts (ours, or the plain one).
    started = e2e.add_mutually_exclusive_group()
    started.add_argument(
        "--reuse", type=_reuse, help="order=URL,notification=URL of running services"
    )
    e2e.add_argument(
        "--storage",
        choices=("memory", "disk"),
        default="memory",
        help="SecantusDB storage of the bench's own server",
    )
    e2e.add_argument(
        "--mongo-retry-writes",
        choices=("on", "off"),
        default="off",
        help="the services' retryable writes; off by default because SecantusDB's registry of "
        "them slows every write down as a run goes on (bench/README.md)",
    )
    e2e.add_argument(
        "--replicas", type=int, default=1, help="processes of each service (competing consumers)"
    )
    started.add_argument(
        "--naive",
        action="store_true",
        help="run the same flow written the plain way (bench/naive.py: awaited confirms, no "
        "outbox, inbox, retries or DLQ) instead of the services; its results JSON is the "
        "--baseline that prices our guarantees",
    )
    e2e.add_argument(
        "--baseline",
        type=Path,
        help="results JSON of an earlier run (say, of the previous commit, same session): "
        "printed beside this run's figures, and the closed-loop target is a ratio to it",
    )
    e2e.add_argument("--skus", type=int, default=20)
    e2e.add_argument("--warmup", type=int, default=20)
    e2e.add_argument("--drain-timeout", type=float, default=120.0)
    e2e.add_argument("--max-closed-s", type=float, default=120.0, help="closed-loop time bound")
    e2e.add_argument("--log-level", default="INFO", help="LOG_LEVEL of the services")
    e2e.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, a closed loop under py-spy; print top functions",
    )
    e2e.add_argument("--profile-orders", type=int, default=200)
    e2e.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/11",
        help="the services' Redis (a DB of its own: cache keys are fixed names)",
    )

    micro = commands.add_parser("micro", help="runtime vs raw aio-pika vs FastStream")
    micro.add_argument("--messages", type=int, default=3000, help="publishes per variant/round")
    micro.add_argument("--inflight", type=int, default=64, help="publishes in flight (window)")
    micro.add_argument(
        "--await-each", type=int, default=600, help="publishes of the await-each variant per round"
    )
    micro.add_argument("--relay-events", type=int, default=2000)
    micro.add_argument("--prefetch", type=int, default=32, help="relay consumer prefetch")
    micro.add_argument("--rounds", type=int, default=3, help="alternating rounds; median kept")
    micro.add_argument("--reservations", type=int, default=300)
    micro.add_argument("--reads", type=int, default=2000)
    micro.add_argument("--only", choices=("publish", "relay", "stock", "buses"), action="append")
    micro.add_argument(
        "--buses",
        type=parse_buses,
        help="the runtime's publisher and relay on each of these buses, side by side"
        " (rabbitmq,nats,redis); alone, only that part runs",
    )
    micro.add_argument(
        "--profile", action="store_true", help="for a missed target, rerun the variant under py-spy"
    )
    micro.add_argument("--out", type=Path, default=Path(".data/bench"))
    micro.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    return root


def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    command = "python -m bench " + shlex.join(argv)
    if args.command == "e2e":
        from bench.e2e import E2EConfig, run_e2e

        config = E2EConfig(
            clients=args.clients,
            orders=args.orders,
            rate=args.rate,
            duration=args.duration,
            out=args.out,
            reuse=args.reuse,
            storage=args.storage,
            mongo_retry_writes=args.mongo_retry_writes == "on",
            replicas=args.replicas,
            naive=args.naive,
            baseline=args.baseline,
            skus=args.skus,
            warmup=args.warmup,
            drain_timeout=args.drain_timeout,
            max_closed_s=args.max_closed_s,
            profile=args.profile,
            profile_orders=args.profile_orders,
            log_level=args.log_level,
            redis_url=args.redis_url,
        )
        run_e2e(config, command)
    else:
        from bench.micro import run_micro

        run_micro(args, command)


if __name__ == "__main__":
    main(sys.argv[1:])
