"""The pipeline under test: its own vhost, its own SecantusDB, the four services as
instrumented OS processes; snapshots of their round-trip counts and CPU time.

Every process started here is stopped here by PID (SIGTERM, then SIGKILL after a bound).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families
from pymongo import MongoClient

from infra import devstack
from infra.devstack import Management, SecantusHandle
from infra.devstack import services as processes
from infra.devstack.services import DATABASES, SERVICES

READY_TIMEOUT_S = 60.0
MACHINE = "machine(all CPUs)"
STOP_TIMEOUT_S = 20.0
PSP_LEDGER_DB = "psp-ledger-db"  # the CPU line of the simulated PSP's own server


@dataclass
class Snapshot:
    at: float  # time.monotonic()
    counts: dict[str, dict[str, int]]  # service -> counter -> value
    cpu: dict[str, float]  # process label -> user+system CPU seconds
    # POST /orders as the order service's own histogram counts it (its replicas summed):
    # upper bound in seconds -> requests answered within it, cumulative as Prometheus keeps it.
    post_orders: dict[float, float] = field(default_factory=dict)
    # The pipeline's SecantusDB, by `<command>.<collection>`: `server_us.<key>` the CPU its
    # threads spent inside such commands, `server_calls.<key>` how many (bench.secantus_accounted).
    server: dict[str, int] = field(default_factory=dict)


@dataclass
class Stack:
    amqp_base: str  # without vhost, e.g. amqp://guest:guest@127.0.0.1:5672
    redis_url: str
    work_dir: Path
    storage: str = ":memory:"  # or "disk": SecantusDB under work_dir/mongo
    log_level: str = "INFO"
    # The services' retryWrites, set in MONGO_URL (infra/devstack/mongo.py says why it is off
    # for SecantusDB); each service's /metrics reports what its client really runs with.
    retry_writes: bool = False
    replicas: int = 1  # processes per service; each has its own label, `order`, `order-2`...
    # What each process runs: the shipped services, counted, or the plain pipeline.
    module: str = "bench.instrumented"
    management: Management = field(default_factory=Management.from_env)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    mongo: SecantusHandle | None = None
    # The simulated payment provider's ledger, on a server of its own: a real PSP's database
    # is not ours, so the pipeline's server serves only the pipeline (its CPU line is apart).
    psp_mongo: SecantusHandle | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    http_ports: dict[str, int] = field(default_factory=dict)
    count_ports: dict[str, int] = field(default_factory=dict)
    server_counts_port: int = 0
    vhost_created: bool = False

    @property
    def vhost(self) -> str:
        return f"bench-{self.run_id}"

    @property
    def amqp_url(self) -> str:
        return f"{self.amqp_base}/{quote(self.vhost, safe='')}"

    @property
    def mongo_url(self) -> str:
        assert self.mongo is not None
        return devstack.with_retry_writes(self.mongo.url, self.retry_writes)

    def database(self, service: str) -> str:
        return f"bench_{self.run_id}_{DATABASES[service]}"

    def labels(self, service: str) -> list[str]:
        return [service, *(f"{service}-{n}" for n in range(2, self.replicas + 1))]

    def url(self, label: str) -> str:
        return f"http://127.0.0.1:{self.http_ports[label]}"

    def urls(self, service: str) -> list[str]:
        return [self.url(label) for label in self.labels(service)]

    def log(self, label: str) -> Path:
        return self.work_dir / f"{label}.log"

    def env(self, service: str, label: str | None = None) -> dict[str, str]:
        label = label or service
        wiring = processes.service_env(
            amqp_url=self.amqp_url,
            mongo_url=self.mongo_url,
            database=self.database(service),
            redis_url=self.redis_url,
            http_port=self.http_ports.get(label, 0),
        )
        psp: dict[str, str] = {}
        if service == "payment" and self.psp_mongo is not None:
            url = devstack.with_retry_writes(self.psp_mongo.url, self.retry_writes)
            psp["PAYMENT_SIMULATED_GATEWAY_MONGO_URL"] = url
        return {
            **wiring,
            **psp,
            "LOG_LEVEL": self.log_level,
            "HTTP_HOST": "127.0.0.1",
            "BENCH_COUNTS_PORT": str(self.count_ports.get(label, 0)),
        }

    def start(self, skus: int, stock: int) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        devstack.create_vhost(self.vhost, self.management)
        self.vhost_created = True
        storage = str(self.work_dir / "mongo") if self.storage == "disk" else ":memory:"
        self.server_counts_port = port = devstack.free_port()
        accounted = ("-m", "bench.secantus_accounted", "--counts-port", str(port))
        self.mongo = devstack.start_secantus(
            storage_path=storage, log_path=self.work_dir / "secantusdb.log", daemon=accounted
        )
        self.psp_mongo = devstack.start_secantus(log_path=self.work_dir / "psp-ledger-db.log")
        # The services' own seeding module, so the catalog documents are the real shape.
        seed = [
            sys.executable,
            "-m",
            "inventory_service.seed",
            "--count",
            str(skus),
            "--stock",
            str(stock),
            "--reset",
        ]
        subprocess.run(
            seed, env=self.env("inventory"), check=True, capture_output=True, timeout=120
        )
        for service in SERVICES:
            for label in self.labels(service):
                self.http_ports[label] = devstack.free_port()
                self.count_ports[label] = devstack.free_port()
                self.processes[label] = processes.launch(
                    [sys.executable, "-m", self.module, service],
                    self.env(service, label),
                    self.log(label),
                )
        for label, process in self.processes.items():
            processes.wait_ready(
                label, process, self.url(label), self.log(label), READY_TIMEOUT_S, interval_s=0.2
            )

    def service_of(self, label: str) -> str:
        return next((s for s in SERVICES if label in self.labels(s)), label)

    def pids(self) -> dict[str, int]:
        pids = {label: p.pid for label, p in self.processes.items()}
        if self.mongo is not None:
            pids["secantusdb"] = self.mongo.pid
        if self.psp_mongo is not None:
            pids[PSP_LEDGER_DB] = self.psp_mongo.pid
        pids["bench-client"] = os.getpid()
        return {**pids, **shared_server_pids()}

    def snapshot(self) -> Snapshot:
        """Counts and CPU per service, its replicas summed."""
        counts: dict[str, dict[str, int]] = {}
        for label, port in self.count_ports.items():
            response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
            summed = counts.setdefault(self.service_of(label), {})
            for key, value in response.json().items():
                summed[key] = summed.get(key, 0) + int(value)
        cpu: dict[str, float] = {}
        for label, seconds in cpu_seconds(self.pids()).items():
            service = self.service_of(label)
            cpu[service] = cpu.get(service, 0.0) + seconds
        post_orders: dict[float, float] = {}
        for url in self.urls("order"):
            for bound, count in post_orders_histogram(url).items():
                post_orders[bound] = post_orders.get(bound, 0.0) + count
        server = httpx.get(f"http://127.0.0.1:{self.server_counts_port}/", timeout=5).json()
        return Snapshot(time.monotonic(), counts, cpu, post_orders, server)

    def modules_running(self) -> dict[str, str]:
        """The module each process runs, read back from its command line (`-m <module>`)."""
        running = {}
        for label, process in self.processes.items():
            argv = psutil.Process(process.pid).cmdline()
            running[label] = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else " ".join(argv)
        return running

    def client_settings(self) -> dict[str, dict[str, str]]:
        """Each process's MongoDB client options, as the running process reports them."""
        return {label: mongo_client_settings(self.url(label)) for label in self.processes}

    def psp_ledger_counts(self) -> dict[str, int]:
        """The simulated PSP's ledger entries on each server, read back: the run's figures
        hold only if they are all on the PSP's own server."""
        counts: dict[str, int] = {}
        for name, server in (("pipeline", self.mongo), ("psp", self.psp_mongo)):
            if server is None:
                continue
            client: MongoClient[dict[str, Any]] = MongoClient(server.url)
            try:
                ledger = client[self.database("payment")]["gateway_charges"]
                counts[name] = ledger.estimated_document_count()
            finally:
                client.close()
        return counts

    def vhost_stats(self) -> dict[str, Any]:
        """The broker's own message counters for the vhost (a cross-check of ours)."""
        response = self.management.request("GET", f"/vhosts/{quote(self.vhost, safe='')}")
        stats: dict[str, Any] = response.json().get("message_stats", {})
        return stats

    def consumer_settings(self) -> dict[str, int]:
        """The run's consumers as the broker lists them: how many run on each queue type with
        each prefetch and ack mode (what the pipelines compared share, read back)."""
        vhost = quote(self.vhost, safe="")
        queues = self.management.request("GET", f"/queues/{vhost}").json()
        types = {q["name"]: q.get("type", "classic") for q in queues}
        seen: Counter[str] = Counter()
        for consumer in self.management.request("GET", f"/consumers/{vhost}").json():
            queue = consumer.get("queue", {}).get("name", "")
            ack = "manual ack" if consumer.get("ack_required") else "auto ack"
            seen[f"{types.get(queue, '?')}, prefetch {consumer.get('prefetch_count')}, {ack}"] += 1
        return dict(seen)

    def stop(self) -> dict[str, int]:
        codes = processes.stop_all(self.processes, timeout_s=STOP_TIMEOUT_S)
        self.processes.clear()
        for server in (self.mongo, self.psp_mongo):
            if server is not None:
                server.stop()
        if self.vhost_created:
            devstack.delete_vhost(self.vhost, self.management)
            self.vhost_created = False
        return codes

    def tail(self, service: str, lines: int = 30) -> str:
        return processes.tail(self.log(service), lines)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """user+system CPU seconds of each process (children not included); gone -> omitted."""
    result = {}
    for label, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        result[label] = times.user + times.system
    # Everything on the machine, ours or not: other work competes for the same CPUs.
    total = psutil.cpu_times()
    result[MACHINE] = (
        total.user
        + total.nice
        + total.system
        + getattr(total, "irq", 0.0)
        + getattr(total, "softirq", 0.0)
        + getattr(total, "steal", 0.0)
    )
    return result


def shared_server_pids() -> dict[str, int]:
    """RabbitMQ's and Redis's server processes, if visible: shared with anything else running
    on this machine, so their CPU per order is indicative only."""
    found: dict[str, int] = {}
    for process in psutil.process_iter(["name", "cmdline"]):
        name = process.info.get("name") or ""
        if name.startswith("beam.smp") and "rabbitmq(shared)" not in found:
            found["rabbitmq(shared)"] = process.pid
        elif name.startswith("redis-server") and "redis(shared)" not in found:
            found["redis(shared)"] = process.pid
    return found


def mongo_client_settings(service_url: str) -> dict[str, str]:
    """The `mongo_client_info` labels a service's /metrics shows: what its driver runs with."""
    text = httpx.get(f"{service_url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "mongo_client_info":
            return dict(family.samples[0].labels)
    return {}


def post_orders_histogram(service_url: str) -> dict[float, float]:
    """The `http_request_duration_seconds` buckets of POST /orders a service's /metrics shows
    (empty if it has none, e.g. the plain pipeline)."""
    text = httpx.get(f"{service_url}/metrics", timeout=5).text
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "http_request_duration_seconds":
            continue
        for sample in family.samples:
            route = (sample.labels.get("route"), sample.labels.get("method"))
            if sample.name.endswith("_bucket") and route == ("/orders", "POST"):
                buckets[float(sample.labels["le"])] = sample.value
    return buckets


def check_retry_writes(reported: dict[str, dict[str, str]], expected: bool) -> None:
    """Fail the run when a service's client does not run with the retryWrites the bench
    prints: the figures would measure another setting."""
    want = "true" if expected else "false"
    wrong = {s: v.get("retry_writes", "not reported") for s, v in reported.items()}
    wrong = {s: v for s, v in wrong.items() if v != want}
    if wrong:
        raise SystemExit(f"bench: retryWrites={want} was asked for, but the services run {wrong}")
