"""`python -m bench e2e`: orders per second, latency percentiles and cost per order of the
whole pipeline on the real servers.

Phases: register customers, calibrate MongoDB, warm up, closed loop (the maximum), open loop
at half of it (or --rate), then, with --profile, a separate closed loop under py-spy so the
profiler never perturbs the measured phases.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from bench import calibrate, profiling
from bench.analysis import analyse_phase
from bench.load import (
    REQUEST_TIMEOUT_S,
    Clock,
    Orders,
    Sample,
    closed_loop,
    open_loop,
    register_customers,
)
from bench.plot import plot_e2e
from bench.report import SERVICES_PIPELINE, baseline_figures, e2e_targets, print_e2e
from bench.sink import HttpSink, MongoSink, Sink
from bench.stack import (
    Snapshot,
    Stack,
    check_retry_writes,
    cpu_seconds,
    mongo_client_settings,
)
from bench.stats import db_ceiling, ratio
from infra.devstack.services import SERVICES
from infra.persistence.sessions import session_key

# What each process of the stack runs: the services (counted), or the plain pipeline.
PIPELINES = {False: SERVICES_PIPELINE, True: "bench.naive"}


@dataclass(frozen=True)
class E2EConfig:
    clients: int = 8
    orders: int = 400
    rate: float | None = None
    duration: float = 20.0
    out: Path = Path(".data/bench")
    reuse: dict[str, str] | None = None
    storage: str = "memory"
    mongo_retry_writes: bool = False
    replicas: int = 1  # processes of each service (competing consumers)
    naive: bool = False  # the plain pipeline of bench/naive.py instead of the services
    baseline: Path | None = None  # results JSON of an earlier run to compare with
    skus: int = 20
    stock: int = 1_000_000
    customers: int = 4
    warmup: int = 20
    drain_timeout: float = 120.0
    max_closed_s: float = 120.0
    calibration_s: float = 3.0
    calibration_concurrency: int = 4
    profile: bool = False
    profile_orders: int = 200
    log_level: str = "INFO"
    amqp_base: str = "amqp://guest:guest@127.0.0.1:5672"
    # Not 0 (infra/bin/up's) nor 13/15 (tests): the services' stock cache keys are fixed
    # names (`stock:SKU-0001`), so a shared DB would mix our levels into someone's cache.
    redis_url: str = "redis://127.0.0.1:6379/11"


class Run:
    """One e2e run against either a stack we started or services we were pointed at."""

    def __init__(self, config: E2EConfig, stack: Stack | None) -> None:
        self.config = config
        self.stack = stack
        self.clock = Clock()
        self.placed = 0  # accepted orders so far, all phases: what the sink must end up with
        self.calibration_db_ms_per_op = math.nan

    def url(self, service: str) -> str:
        if self.stack is not None:
            return self.stack.url(service)
        assert self.config.reuse is not None
        return self.config.reuse[service]

    def order_urls(self) -> list[str]:
        return [self.url("order")] if self.stack is None else self.stack.urls("order")

    async def snapshot(self) -> Snapshot | None:
        return None if self.stack is None else await asyncio.to_thread(self.stack.snapshot)

    async def phase(self, sink: Sink, drive: Awaitable[list[Sample]]) -> dict[str, Any]:
        """Snapshot, drive the load, wait for the orders to end (bounded), snapshot."""
        before = await self.snapshot()
        # As timeit does: no cyclic collection in this client while it sends. Its full
        # collections, walking every sample so far, stopped its loop for 30-77 ms, and each
        # request due meanwhile counted the pause as server latency. Refcounting still frees
        # nearly all of a phase's garbage; the cycles wait for the collection after it.
        gc.disable()
        try:
            samples = await drive
        finally:
            gc.enable()
            gc.collect()
        ids = [s.order_id for s in samples if s.order_id is not None]
        self.placed += len(ids)
        outcomes = await sink.collect(ids, self.placed, self.config.drain_timeout)
        after = await self.snapshot()
        return analyse_phase(samples, outcomes, self.clock, before, after)

    async def main(self) -> dict[str, Any]:
        cfg = self.config
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
            tokens = await register_customers(http, self.url("order"), cfg.customers)
            skus = [f"SKU-{n:04d}" for n in range(1, cfg.skus + 1)]
            orders = Orders(self.order_urls(), tokens, skus)
            sink: Sink
            if self.stack is not None:
                sink = MongoSink(self.stack.mongo_url, self.stack.database("notification"))
            else:
                sink = HttpSink(http, self.url("notification"))
            ops, self.calibration_db_ms_per_op = await self.calibrate("before")
            try:
                await self.phase(
                    sink, closed_loop(http, orders, cfg.clients, cfg.warmup, 60, "warm-up")
                )
                closed = await self.phase(
                    sink, closed_loop(http, orders, cfg.clients, cfg.orders, cfg.max_closed_s)
                )
                rate = cfg.rate or closed["orders_per_s"] / 2
                opened = await self.phase(sink, open_loop(http, orders, rate, cfg.duration))
                # Again, now that the server holds what the run wrote: SecantusDB's cost per
                # operation grows with the writes it remembers (see the profile).
                ops_after, db_ms_after = await self.calibrate("after")
                profiles = await self.profile(sink, http, orders) if cfg.profile else {}
            finally:
                await sink.close()
                if self.stack is not None:
                    await forget_redis_keys(self.config.redis_url, tokens, skus)
        total = closed.get("cost_per_order", {}).get("total", {})
        # The PSP's ledger has a server of its own in a run the bench starts; through
        # --reuse it may share the pipeline's, whose ceiling then counts both.
        psp_apart = self.stack is not None and self.stack.psp_mongo is not None
        mongo_per_order = total.get("mongo", math.nan) + (
            0.0 if psp_apart else total.get("psp", 0.0)
        )
        ceiling = db_ceiling(ops, mongo_per_order)
        return {
            "phases": {"closed": closed, "open": opened},
            "open_rate": rate,
            "mongo_ops_per_s": ops,
            "mongo_ops_per_s_after": ops_after,
            "ceiling_after": db_ceiling(ops_after, mongo_per_order),
            "mongo_per_order": mongo_per_order,
            "ceiling": ceiling,
            "ceiling_share": ratio(closed["orders_per_s"], ceiling),
            "db_ms_per_op": {
                "calibration": self.calibration_db_ms_per_op,
                "calibration after the run": db_ms_after,
                "closed loop": ratio(
                    closed.get("cpu_ms_per_order", {}).get("secantusdb", math.nan), mongo_per_order
                ),
            },
            "db_busy_closed": ratio(
                closed.get("cpu_s", {}).get("secantusdb", math.nan), closed.get("window_s", 0.0)
            ),
            "profiles": profiles,
        }

    async def calibrate(self, label: str) -> tuple[float, float]:
        """(simple MongoDB ops/s, SecantusDB CPU ms per op); NaN when reusing services."""
        if self.stack is None or self.stack.mongo is None:
            return math.nan, math.nan
        cfg, pid = self.config, {"secantusdb": self.stack.mongo.pid}
        cpu_before = cpu_seconds(pid).get("secantusdb", math.nan)
        ops = await calibrate.mongo_ops_per_s(
            self.stack.mongo_url,
            f"bench_{self.stack.run_id}_calibration_{label}",
            cfg.calibration_s,
            cfg.calibration_concurrency,
        )
        db_cpu = cpu_seconds(pid).get("secantusdb", math.nan) - cpu_before
        return ops, 1000 * db_cpu / (ops * cfg.calibration_s)

    async def profile(
        self, sink: Sink, http: httpx.AsyncClient, orders: Orders
    ) -> dict[str, list[str]]:
        """A closed loop with py-spy attached to every service; reported, not measured."""
        if self.stack is None:
            return {}
        cfg = self.config
        out = cfg.out / "profiles"
        # SecantusDB is a Python process too: its profile says what the database spends on.
        pids = {s: self.stack.processes[s].pid for s in SERVICES}
        if self.stack.mongo is not None:
            pids["secantusdb"] = self.stack.mongo.pid
        recordings = [
            profiling.record(pid, label, out, cfg.max_closed_s + 60) for label, pid in pids.items()
        ]
        try:
            await self.phase(
                sink,
                closed_loop(
                    http, orders, cfg.clients, cfg.profile_orders, cfg.max_closed_s, "profiled"
                ),
            )
        finally:
            for recording in recordings:
                await asyncio.to_thread(recording.stop)
        return {r.label: profiling.top_lines(r.output) for r in recordings}


async def forget_redis_keys(redis_url: str, tokens: list[str], skus: list[str]) -> None:
    """Delete what this run left in Redis: its sessions and the cached stock levels."""
    sessions = [session_key(t) for t in tokens]
    client = Redis.from_url(redis_url)
    try:
        await client.delete(*sessions, *(f"stock:{sku}" for sku in skus))
    finally:
        await client.aclose()


def check_pipeline(running: dict[str, str], expected: str) -> None:
    """Stop when a process runs another module than the pipeline the run is labelled with."""
    wrong = {label: module for label, module in running.items() if module != expected}
    if wrong:
        raise SystemExit(f"bench: every process should run {expected}, but {wrong}")
    print(f"processes, read back from their command lines: {len(running)} running {expected}")


def revision() -> str:
    """The code measured: HEAD plus how many files differ from it (others edit as we run)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'} + {len(dirty)} uncommitted changes"


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs, load avg {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} at start, "
        f"Python {platform.python_version()}, code {revision()}"
    )


def run_e2e(config: E2EConfig, command: str) -> dict[str, Any]:
    started = time.strftime("%Y%m%d-%H%M%S")
    stack = None
    header = {
        "machine": machine(),
        "pipeline": "reused",  # or, once its processes run it, the module the stack started
        "config": {**config.__dict__, "out": str(config.out), "command": command},
    }
    if config.reuse is None:
        stack = Stack(
            config.amqp_base,
            config.redis_url,
            config.out / f"e2e-{started}",
            storage=config.storage,
            log_level=config.log_level,
            retry_writes=config.mongo_retry_writes,
            replicas=config.replicas,
            module=PIPELINES[config.naive],
        )
        print(
            f"starting {stack.module} (vhost {stack.vhost}, SecantusDB {config.storage}, "
            f"retryWrites={'on' if config.mongo_retry_writes else 'off'}, "
            f"{config.replicas} process(es) per service, "
            f"logs in {stack.work_dir})",
            file=sys.stderr,
        )
    try:
        # Inside the try: a service that fails to start must not leave the others running.
        if stack is not None:
            stack.start(config.skus, config.stock)
            check_pipeline(stack.modules_running(), stack.module)
            header["pipeline"] = stack.module
            reported = stack.client_settings()
            check_retry_writes(reported, config.mongo_retry_writes)
        else:
            assert config.reuse is not None
            reported = {s: mongo_client_settings(u) for s, u in config.reuse.items()}
        header["mongo_client"] = reported
        print(f"MongoDB client options, read back from the services: {reported}")
        results = {**header, **asyncio.run(Run(config, stack).main())}
        if stack is not None:
            results["vhost_stats"] = stack.vhost_stats()
            results["consumers"] = stack.consumer_settings()
            results["psp_ledger"] = ledger = stack.psp_ledger_counts()
            print(f"simulated PSP's ledger entries, read back per server: {ledger}")
            if ledger.get("pipeline", 0) or not ledger.get("psp", 0):
                raise SystemExit("bench: the PSP's ledger is not (only) on its own server")
    finally:
        if stack is not None:
            exit_codes = stack.stop()
            print(f"services stopped: exit codes {exit_codes}", file=sys.stderr)
    if config.baseline is not None:
        baseline = json.loads(config.baseline.read_text())
        results["baseline"] = baseline_figures(baseline)
        results["baseline_pipeline"] = baseline.get("pipeline", SERVICES_PIPELINE)
        results["baseline_path"] = str(config.baseline)
    results["targets"] = [t.as_dict() for t in e2e_targets(results)]
    config.out.mkdir(parents=True, exist_ok=True)
    json_path = config.out / f"e2e-{started}.json"
    json_path.write_text(json.dumps(results, indent=2, default=str))
    png = plot_e2e(results, config.out / f"e2e-{started}.png")
    print_e2e(results)
    print(f"\nresults: {json_path}\nplot:    {png}")
    return results
