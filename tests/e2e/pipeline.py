"""The four services as separate OS processes, wired to the test run's servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from infra import devstack
from infra.devstack import RabbitVhost, free_port

SERVICES = ("order", "inventory", "payment", "notification")
DATABASES = {
    "order": "orders",
    "inventory": "inventory",
    "payment": "payments",
    "notification": "notifications",
}


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
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def database(self, service: str) -> str:
        return f"e2e_{self.run_id}_{DATABASES[service]}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def env(self, service: str) -> dict[str, str]:
        return {
            **os.environ,
            "ENVIRONMENT": "test",
            "AMQP_URL": self.amqp_url,
            "MONGO_URL": self.mongo_url,
            "MONGO_DATABASE": self.database(service),
            "REDIS_URL": self.redis_url,
            "HTTP_PORT": str(self.ports.get(service) or free_port()),
            **self.extra_env,
            **self.service_env.get(service, {}),
        }

    def seed(self, count: int, stock: int) -> None:
        subprocess.run(
            [sys.executable, "-m", "inventory_service.seed", "--count", str(count),
             "--stock", str(stock), "--reset"],
            env=self.env("inventory"), check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def start(self, service: str) -> None:
        self.ports.setdefault(service, free_port())
        log = (self.log_dir / f"{service}.log").open("ab")
        self.processes[service] = subprocess.Popen(
            [sys.executable, "-m", f"{service}_service"],
            env=self.env(service),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_all(self, timeout_s: float = 60.0) -> None:
        for service in SERVICES:
            self.start(service)
        for service in SERVICES:
            self.wait_ready(service, timeout_s)

    def wait_ready(self, service: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            process = self.processes[service]
            if process.poll() is not None:
                raise RuntimeError(
                    f"{service} exited with {process.returncode}:\n{self.tail(service)}"
                )
            try:
                if httpx.get(f"{self.url(service)}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{service} not ready within {timeout_s} s:\n{self.tail(service)}")

    def stop(
        self, service: str, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 20
    ) -> int:
        process = self.processes.pop(service)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        return process.returncode

    def stop_all(self) -> dict[str, int]:
        return {service: self.stop(service) for service in list(self.processes)}

    def tail(self, service: str, lines: int = 40) -> str:
        path = self.log_dir / f"{service}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )


@contextmanager
def running_pipeline(
    rabbitmq_vhost: RabbitVhost,
    mongo_url: str,
    redis_url: str,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    service_env: dict[str, dict[str, str]] | None = None,
    seed: tuple[int, int] | None = None,
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
    )
    if seed is not None:
        running.seed(*seed)
    try:
        running.start_all()
        yield running
    finally:
        codes = running.stop_all()
        devstack.delete_vhost(vhost, rabbitmq_vhost.management)
        for service in SERVICES:
            print(f"--- {service} log tail ---\n{running.tail(service, 15)}")
    assert codes == dict.fromkeys(SERVICES, 0), f"unclean shutdown: {codes}"
