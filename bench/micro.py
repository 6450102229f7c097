"""`python -m bench micro`: ratios measured in one run on the same broker (own vhost).

Variants alternate within each round (A B C, B C A, C A B, then the same reversed: C B A, ...)
so drift in the machine's load hits them alike and none always follows the same one; the
median of the rounds is reported. With --profile, a variant whose target
is missed is run once more under py-spy (attached to this process) and its top functions
are printed; that run is not part of the figures.

It runs on uvloop, the event loop of the services (infra.service), with their heap settings
(infra.heap), and prints both as it reads them back: the wrapper's cost relative to raw
aio-pika depends on the loop and on the garbage collector under both.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import uvloop

from bench import profiling
from bench.e2e import machine
from bench.micro_publish import PublishBench, envelopes
from bench.micro_relay import RELAYS, RelayBench
from bench.micro_stock import StockBench
from bench.report import Target, fmt
from bench.stack import MACHINE, cpu_seconds, shared_server_pids
from bench.stats import ratio
from infra import devstack
from infra.heap import collect_young_garbage_less_often, freeze_startup_objects
from infra.observability import tracing
from infra.settings import TracingSettings

AMQP_BASE = "amqp://guest:guest@127.0.0.1:5672"
SETTLE_S = 0.5
BROKER = "rabbitmq(shared)"


def rotations(names: list[str], rounds: int) -> list[list[str]]:
    """The order of the variants in each round: every rotation of `names`, then every
    rotation of it reversed, and again. So each variant comes first in a round (right after
    its preload) as often as the others, and follows each other variant as often: rotations
    alone made each one always follow the same one, whose wind-down (FastStream's shutdown,
    its garbage) then landed on that one's figures round after round."""
    count = len(names)
    orders = []
    for r in range(rounds):
        cycle = names if (r // count) % 2 == 0 else names[::-1]
        orders.append(cycle[r % count :] + cycle[: r % count])
    return orders


class Round(NamedTuple):
    rate: float  # items/s
    cpu_us: float  # CPU µs of this process per item
    machine: float  # CPUs busy on the whole machine meanwhile (2.0 = both cores)
    broker: float  # CPUs used by the RabbitMQ node meanwhile (shared with anything else)


async def measured(work: Awaitable[tuple[float, float]]) -> Round:
    """Run one variant, noting how busy the machine and the broker were meanwhile: a rate
    taken while the CPUs were saturated by something else says little about the code.

    First (not timed) the variant before gets SETTLE_S to finish closing its connections,
    and its garbage is collected: otherwise a full collection, which scans every object of
    this process (tens of ms), lands on whichever variant happens to cross the collector's
    threshold."""
    await asyncio.sleep(SETTLE_S)
    gc.collect()
    pids = shared_server_pids()
    before, started = cpu_seconds(pids), time.monotonic()
    rate, cpu_us = await work
    after, elapsed = cpu_seconds(pids), time.monotonic() - started
    busy = {k: (after[k] - before[k]) / elapsed for k in after if k in before}
    return Round(rate, cpu_us, busy.get(MACHINE, math.nan), busy.get(BROKER, math.nan))


def report_variants(
    runs: dict[str, list[Round]], unit: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Print and return (median rate, median CPU µs per item) of each variant."""
    rate = {k: statistics.median(r.rate for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r.cpu_us for r in v) for k, v in runs.items()}
    print(
        f"  {'variant':<10} {unit + '/s':>9} {'µs CPU/' + unit:>13} {'machine':>8} {'broker':>7}"
        "  (rounds)"
    )
    for name, rounds in runs.items():
        machine_busy = statistics.median(r.machine for r in rounds)
        broker_busy = statistics.median(r.broker for r in rounds)
        spread = ", ".join(fmt(r.rate) for r in rounds)
        print(
            f"  {name:<10} {fmt(rate[name]):>9} {fmt(cpu[name]):>13} {fmt(machine_busy):>8} "
            f"{fmt(broker_busy):>7}  ({spread})"
        )
    print("  machine/broker: CPUs busy meanwhile (of the whole machine / of the RabbitMQ node)")
    return rate, cpu


def recorded(
    runs: dict[str, list[Round]],
    median: dict[str, float],
    cpu: dict[str, float],
    unit: str,
    **setting: int,
) -> dict[str, Any]:
    """A part's rounds and medians as written to the results file."""
    return {
        "runs": {k: [r._asdict() for r in v] for k, v in runs.items()},
        f"median_{unit}_per_s": median,
        "median_cpu_us": cpu,
        **setting,
    }


def runtime_target(
    what: str, other: str, median: dict[str, float], variant: str, goal: float
) -> Target:
    """The runtime's median rate over another variant's: at least `goal` times."""
    return Target(
        f"runtime {what} ÷ {other}", ratio(median["runtime"], median[variant]), goal, False, "x"
    )


async def profiled(label: str, out: Path, work: Callable[[], Awaitable[Any]]) -> list[str]:
    recording = profiling.record(os.getpid(), label, out, max_s=120, rate=250)
    await asyncio.sleep(1.0)  # py-spy needs a moment to attach before the work starts
    try:
        await work()
    finally:
        await asyncio.to_thread(recording.stop)
    lines = [f"-- {label}", *profiling.top_lines(recording.output, 15)]
    # Where the wrapper's own time goes: inclusive shares of the runtime, tracing, metrics.
    for part in ("infra/", "opentelemetry/", "prometheus_client/"):
        lines += [f"incl. {line}" for line in profiling.top_inclusive(recording.output, part, 5)]
    return lines


async def publish_part(args: argparse.Namespace, url: str, out: dict[str, Any]) -> list[Target]:
    bench = PublishBench(url)
    await bench.open()
    try:
        await bench.read_back()
        items, each = envelopes(args.messages), envelopes(args.await_each)
        # Warm-up, not recorded: connections, exchange declarations, first-call caches.
        for name in ("runtime", "raw", "raw-each"):
            await bench.variant(name, items[:200], args.inflight)
        runs: dict[str, list[Round]] = {"runtime": [], "raw": [], "raw-each": []}
        for order in rotations(list(runs), args.rounds):
            for name in order:
                batch = each if name == "raw-each" else items
                runs[name].append(await measured(bench.variant(name, batch, args.inflight)))
        print(f"\n== publisher: {args.inflight} in flight, median of {args.rounds} rounds ==")
        median, cpu = report_variants(runs, "msg")
        print(f"  CPU per message runtime ÷ raw: {fmt(ratio(cpu['runtime'], cpu['raw']))}x")
        out["publish"] = recorded(runs, median, cpu, "msgs", inflight=args.inflight)
        targets = [
            runtime_target("Broker.publish", "raw aio-pika (same window)", median, "raw", 0.9),
            runtime_target("Broker.publish", "raw aio-pika await-each", median, "raw-each", 5),
        ]
        if args.profile and any(t.met is False for t in targets):
            out_dir = args.out / "profiles"
            # More messages than measured, so the profile has enough samples; raw alongside
            # for comparison.
            many = envelopes(args.messages * 5)
            out["publish"]["profile"] = [
                *await profiled(
                    "micro-publish-runtime",
                    out_dir,
                    lambda: bench.variant("runtime", many, args.inflight),
                ),
                *await profiled(
                    "micro-publish-raw", out_dir, lambda: bench.variant("raw", many, args.inflight)
                ),
            ]
        return targets
    finally:
        if bench.queue is not None:  # the sink would otherwise keep filling from the relay part
            await bench.queue.delete(if_unused=False, if_empty=False)
        await bench.close()


async def relay_part(args: argparse.Namespace, url: str, out: dict[str, Any]) -> list[Target]:
    bench = RelayBench(url, args.prefetch)
    await bench.open()
    try:
        variants = {"runtime": bench.runtime, "raw": bench.raw, "faststream": bench.faststream}
        await bench.preload(200)  # warm-up round, not recorded
        bench.reading_back = True
        for run in variants.values():
            await run(200)
        bench.reading_back = False
        await bench.read_back()
        runs: dict[str, list[Round]] = {name: [] for name in variants}
        for order in rotations(list(variants), args.rounds):
            await bench.preload(args.relay_events)
            for name in order:
                runs[name].append(await measured(variants[name](args.relay_events)))
        print(f"\n== relay: consume -> validate -> confirmed publish, prefetch {args.prefetch} ==")
        median, cpu = report_variants(runs, "event")
        for other in ("raw", "faststream"):
            relative_cpu = ratio(cpu["runtime"], cpu[other])
            print(f"  CPU per event runtime ÷ {other}: {fmt(relative_cpu)}x")
        out["relay"] = recorded(runs, median, cpu, "events", prefetch=args.prefetch)
        targets = [
            runtime_target(
                "relay", "raw aio-pika relay (same queue, prefetch)", median, "raw", 0.9
            ),
            runtime_target("relay", "FastStream relay", median, "faststream", 1.2),
        ]
        if args.profile and any(t.met is False for t in targets):
            events = args.relay_events * 3  # enough samples
            await bench.preload(events)
            for other in RELAYS[1:]:  # only the runtime's copy is consumed here
                await bench.purge(other)
            out["relay"]["profile"] = await profiled(
                "micro-relay-runtime", args.out / "profiles", lambda: bench.runtime(events)
            )
        return targets
    finally:
        await bench.close()


async def stock_part(args: argparse.Namespace, out: dict[str, Any]) -> list[Target]:
    mongo = devstack.start_secantus(log_path=args.out / "micro-secantusdb.log")
    bench = StockBench(mongo.url, args.redis_url)
    try:
        await bench.open()
        figures: dict[str, list[float]] = {}
        for order in rotations(["cached", "uncached"], args.rounds):
            for mode in order:
                cached = mode == "cached"
                figures.setdefault(f"reserve {mode}", []).append(
                    await bench.reserve(cached, args.reservations, concurrency=8)
                )
                figures.setdefault(f"read {mode}", []).append(
                    await bench.read(cached, args.reads, concurrency=16)
                )
        median = {k: statistics.median(v) for k, v in figures.items()}
        out["stock"] = {"rates": figures, "median_per_s": median}
        print("\n== stock: reservation transaction and GET /stock read path ==")
        for name, value in sorted(median.items()):
            print(
                f"  {name:<18} {fmt(value):>8} /s   (rounds: "
                f"{', '.join(fmt(r) for r in figures[name])})"
            )
        reserve = ratio(median["reserve cached"], median["reserve uncached"])
        read = ratio(median["read cached"], median["read uncached"])
        print(f"  reserve cached ÷ uncached {fmt(reserve)}x, read cached ÷ uncached {fmt(read)}x")
        return []
    finally:
        await bench.close()
        mongo.stop()


async def main(args: argparse.Namespace, url: str, out: dict[str, Any]) -> list[Target]:
    parts = args.only or (["buses"] if args.buses else ["publish", "relay", "stock"])
    # The runtime's tracing as a service sets it up without an exporter (unsampled spans).
    tracing.use_tracer_provider(tracing.build_provider("bench", TracingSettings()))
    loop = type(asyncio.get_running_loop())
    out["event_loop"] = f"{loop.__module__}.{loop.__qualname__}"
    print(f"  event loop: {out['event_loop']}")
    # The heap as a service settles it before it connects (infra.heap): what startup made is
    # frozen out of the collector's reach, and young garbage is collected less often. Read
    # back from the collector.
    freeze_startup_objects()
    collect_young_garbage_less_often()
    out["heap"] = {"frozen": gc.get_freeze_count(), "thresholds": list(gc.get_threshold())}
    print(f"  heap: {out['heap']['frozen']} objects frozen, gc thresholds {gc.get_threshold()}")
    targets: list[Target] = []
    if "buses" in parts:
        from bench.micro_buses import buses_part

        targets += await buses_part(args, url, out)
    if "publish" in parts:
        targets += await publish_part(args, url, out)
    if "relay" in parts:
        targets += await relay_part(args, url, out)
    if "stock" in parts:
        targets += await stock_part(args, out)
    return targets


def run_micro(args: argparse.Namespace, command: str) -> dict[str, Any]:
    args.out.mkdir(parents=True, exist_ok=True)
    management = devstack.Management.from_env()
    vhost = f"bench-micro-{uuid.uuid4().hex[:6]}"
    devstack.create_vhost(vhost, management)
    print(f"#### bench micro  ({command})\n  machine: {machine()}\n  vhost: {vhost}")
    results: dict[str, Any] = {"command": command, "machine": machine()}
    try:
        targets = uvloop.run(main(args, f"{AMQP_BASE}/{quote(vhost, safe='')}", results))
    finally:
        devstack.delete_vhost(vhost, management)
    print("\n== targets (goals, not assertions) ==")
    for target in targets:
        print(target.line())
    for part in ("publish", "relay"):
        for line in results.get(part, {}).get("profile", []):
            print(f"  [{part} profile] {line}")
    results["targets"] = [t.as_dict() for t in targets]
    path = args.out / f"micro-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path}")
    return results
