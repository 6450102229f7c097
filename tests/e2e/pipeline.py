"""The four services as separate OS processes, wired to the test run's servers."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import pytest
from pymongo import MongoClient

from infra import devstack
from infra.devstack import RabbitVhost, free_port
from infra.devstack import services as processes
from infra.devstack.services import DATABASES, SERVICES
from inventory_service.seed import catalog_upserts


@dataclass
class Pipeline:
    amqp_url: str
    mongo_url: str
    redis_url: str
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    # Per service, applied over extra_env (e.g. one service on a Redis of its own).
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    # Processes per service, each on its own HTTP port, sharing the service's database and
    # queues. `url(service)` is the first one's; `urls(service)` all of them.
    replicas: int = 1
    # Processes of one service beyond `replicas` (e.g. {"order": 1}: a second order process).
    extra_replicas: dict[str, int] = field(default_factory=dict)
    # By process name (`order`, `order-2`, ...: infra.devstack.services.replica_names).
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def database(self, service: str) -> str:
        return f"e2e_{self.run_id}_{DATABASES[service]}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def urls(self, service: str) -> list[str]:
        return [f"http://127.0.0.1:{self.ports[n]}" for n in self._names(service)]

    def log(self, service: str) -> Path:
        return self.log_dir / f"{service}.log"

    def env(self, service: str) -> dict[str, str]:
        """Environment of a process: `service` may be a replica's name (`order-2`)."""
        base = processes.service_of(service)
        wiring = processes.service_env(
            amqp_url=self.amqp_url,
            mongo_url=self.mongo_url,
            database=self.database(base),
            redis_url=self.redis_url,
            http_port=self.ports.get(service) or free_port(),
        )
        return {**wiring, **self.extra_env, **self.service_env.get(base, {})}

    def _names(self, service: str) -> list[str]:
        return processes.replica_names(service, self.replicas + self.extra_replicas.get(service, 0))

    def names(self) -> list[str]:
        """Every process name, the services' first ones first."""
        return [name for service in SERVICES for name in self._names(service)]

    def seed(self, count: int, stock: int) -> None:
        """The demo catalog's upserts, written from here: `python -m inventory_service.seed`
        would import a whole service first, a second or more of CPU before every pipeline
        (tests/integration/test_inventory_seed.py runs the command itself)."""
        client: MongoClient[dict[str, Any]] = MongoClient(self.mongo_url)
        try:
            client[self.database("inventory")]["stock"].bulk_write(
                catalog_upserts(count, stock, reset=True)
            )
        finally:
            client.close()

    def start(self, service: str) -> None:
        for name in self._names(service):
            self.start_replica(name)

    def start_replica(self, name: str) -> None:
        """Start one process by name (`order-2`), on the port it had if it ran before."""
        self.ports.setdefault(name, free_port())
        service = processes.service_of(name)
        self.processes[name] = processes.launch(
            [sys.executable, "-m", f"{service}_service"], self.env(name), self.log(name)
        )

    def start_all(self, timeout_s: float = 60.0) -> None:
        """The first process of each service, then, once they are ready, their siblings: a
        sibling consuming a quorum queue the first one is declaring that moment can find the
        queue's Raft process not started yet, and the broker closes its connection (541,
        `noproc` in rabbit_quorum_queue:consume), which fails the process's startup."""
        siblings = [name for name in self.names() if name not in SERVICES]
        for batch in (list(SERVICES), siblings):
            for name in batch:
                self.start_replica(name)
            for name in batch:
                self.wait_replica_ready(name, timeout_s)

    def wait_ready(self, service: str, timeout_s: float) -> None:
        for name in self._names(service):
            self.wait_replica_ready(name, timeout_s)

    def wait_replica_ready(self, name: str, timeout_s: float) -> None:
        url = f"http://127.0.0.1:{self.ports[name]}"
        processes.wait_ready(name, self.processes[name], url, self.log(name), timeout_s)

    def stop(
        self, service: str, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 20
    ) -> int:
        """Stop every replica of `service`; the first one's exit code."""
        stopping = {name: self.processes.pop(name) for name in self._names(service)}
        return processes.stop_all(stopping, sig, timeout_s)[service]

    def stop_replica(
        self, name: str, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 20
    ) -> int:
        """Stop one process by name (`order-2`), its siblings serving on; its exit code."""
        return processes.stop_all({name: self.processes.pop(name)}, sig, timeout_s)[name]

    def kill_replica(self, name: str) -> int:
        """SIGKILL one process by name: no graceful shutdown, deliveries left unacked."""
        return self.stop_replica(name, signal.SIGKILL)

    def restart_replica(
        self, name: str, sig: signal.Signals = signal.SIGTERM, ready_timeout_s: float = 120
    ) -> int:
        """Stop one process by name with `sig`, start it again on its port and wait until it
        is ready; the stopped process's exit code."""
        code = self.stop_replica(name, sig)
        self.start_replica(name)
        self.wait_replica_ready(name, ready_timeout_s)
        return code

    def stop_all(self) -> dict[str, int]:
        codes = processes.stop_all(self.processes)
        self.processes.clear()
        return codes

    def tail(self, service: str, lines: int = 40) -> str:
        return processes.tail(self.log(service), lines)


@contextmanager
def running_pipeline(
    rabbitmq_vhost: RabbitVhost,
    mongo_url: str,
    redis_url: str,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    service_env: dict[str, dict[str, str]] | None = None,
    seed: tuple[int, int] | None = None,
    extra_replicas: dict[str, int] | None = None,
) -> Iterator[Pipeline]:
    """The four services on a vhost and databases of their own, stopped (and their exit
    codes checked: a graceful stop is 0) when the block ends. `seed`: (SKUs, stock each)."""
    vhost = f"e2e-{uuid.uuid4().hex[:6]}"
    devstack.create_vhost(vhost, rabbitmq_vhost.management)
    base = rabbitmq_vhost.url.rsplit("/", 1)[0]
    running = Pipeline(
        f"{base}/{quote(vhost, safe='')}",
        mongo_url,
        redis_url,
        log_dir,
        extra_env=extra_env or {},
        service_env=service_env or {},
        extra_replicas=extra_replicas or {},
    )
    if seed is not None:
        running.seed(*seed)
    try:
        running.start_all()
        yield running
    finally:
        codes = running.stop_all()
        devstack.delete_vhost(vhost, rabbitmq_vhost.management)
        for name in running.names():
            print(f"--- {name} log tail ---\n{running.tail(name, 15)}")
    assert codes == dict.fromkeys(running.names(), 0), f"unclean shutdown: {codes}"


ServiceEnv = dict[str, dict[str, str]]
Scope = Literal["session", "package", "module", "class", "function"]


def pipeline_fixture(
    name: str,
    extra_env: dict[str, str] | None = None,
    *,
    scope: Scope = "module",
    service_env: ServiceEnv | Callable[[pytest.FixtureRequest], ServiceEnv] | None = None,
    seed: tuple[int, int] | None = None,
    extra_replicas: dict[str, int] | None = None,
) -> Any:
    """A fixture `name` that runs a pipeline of its own (running_pipeline) on the session's
    servers for `scope`. `service_env` may be computed from other fixtures through the request
    (a Redis of the test's own, say)."""

    @pytest.fixture(scope=scope, name=name)
    def running(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Pipeline]:
        per_service = service_env(request) if callable(service_env) else service_env
        with running_pipeline(
            request.getfixturevalue("rabbitmq_vhost"),
            request.getfixturevalue("mongo_url"),
            request.getfixturevalue("redis_url"),
            tmp_path_factory.mktemp(f"{name}-logs"),
            extra_env,
            per_service,
            seed,
            extra_replicas,
        ) as pipeline:
            yield pipeline

    return running
