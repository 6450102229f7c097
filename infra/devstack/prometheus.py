"""A local Prometheus server (Debian's `prometheus` binary) on the project's own configuration.

infra/deploy/prometheus/prometheus.yml and alerts.yml are written for compose (targets by
service name). `local_config` rewrites only what differs on one machine: the targets (the
services' local ports, RabbitMQ's plugin on 127.0.0.1), the intervals, the rule file path and,
on request, the `for:` of the rules (tests cannot wait five minutes). Every expression, label
and annotation stays the project's. Used by `infra/bin/up --prometheus` and the ops tests.

RabbitMQ's per-queue series: the deploy config sets `prometheus.return_per_object_metrics`
in rabbitmq.conf; a local broker is not ours to reconfigure, so the rewrite scrapes
`/metrics/per-object`, which gives the same series names per queue without that setting.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from infra.devstack._util import DevstackError, free_port, stop_child
from infra.devstack.rabbitmq import PROMETHEUS_PORT
from infra.devstack.services import wait_ready

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
SERVICE_JOB = "order-pipeline"
RABBITMQ_JOB = "rabbitmq"
START_TIMEOUT = 30.0


def _load_yaml(path: Path) -> Any:
    # PyYAML comes with the dev/test extras; only this local tooling needs it.
    import yaml

    return yaml.safe_load(path.read_text())


def local_config(
    service_targets: Mapping[str, str],
    rules_file: Path,
    interval: str = "15s",
    rabbitmq_target: str = f"127.0.0.1:{PROMETHEUS_PORT}",
) -> dict[str, Any]:
    """prometheus.yml with `service -> host:port` targets, RabbitMQ at `rabbitmq_target`."""
    config: dict[str, Any] = copy.deepcopy(_load_yaml(DEPLOY / "prometheus.yml"))
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(rules_file)]
    for job in config["scrape_configs"]:
        if job["job_name"] == SERVICE_JOB:
            for static in job["static_configs"]:
                service = static["labels"]["service"]
                if service not in service_targets:
                    raise DevstackError(f"no local target for service {service!r}")
                static["targets"] = [service_targets[service]]
        elif job["job_name"] == RABBITMQ_JOB:
            job["metrics_path"] = "/metrics/per-object"
            for static in job["static_configs"]:
                static["targets"] = [rabbitmq_target]
        else:
            raise DevstackError(f"unknown scrape job {job['job_name']!r} in prometheus.yml")
    return config


def local_rules(for_overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
    """alerts.yml with the `for:` of the named alerts replaced (nothing else changes)."""
    rules: dict[str, Any] = copy.deepcopy(_load_yaml(DEPLOY / "alerts.yml"))
    overrides = dict(for_overrides or {})
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in overrides:
                rule["for"] = overrides.pop(rule["alert"])
    if overrides:
        raise DevstackError(f"no such alerts in alerts.yml: {sorted(overrides)}")
    return rules


@dataclass
class PrometheusServer:
    """A running `prometheus` process; stop() ends exactly that PID."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5.0)
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "success":
            raise DevstackError(f"Prometheus {path}: {body}")
        return body["data"]

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.get("targets", state="active")["activeTargets"]
        return active

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.get("alerts")["alerts"]
        return alerts

    def stop(self, timeout_s: float = 10.0) -> int | None:
        return stop_child(self.process, timeout_s)


def write_local_files(
    workdir: Path,
    service_targets: Mapping[str, str],
    interval: str = "15s",
    for_overrides: Mapping[str, str] | None = None,
) -> Path:
    """Write the local prometheus.yml and alerts.yml into `workdir`; return the config path."""
    workdir.mkdir(parents=True, exist_ok=True)
    rules = workdir / "alerts.yml"
    config = workdir / "prometheus.yml"
    # JSON is YAML: no writer needed, and Prometheus reads it as is.
    rules.write_text(json.dumps(local_rules(for_overrides), indent=1))
    config.write_text(json.dumps(local_config(service_targets, rules, interval), indent=1))
    return config


def prometheus_command(config: Path, data_dir: Path, port: int) -> list[str]:
    return [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1d",
    ]


def start_prometheus(
    workdir: Path,
    service_targets: Mapping[str, str],
    *,
    interval: str = "15s",
    for_overrides: Mapping[str, str] | None = None,
    port: int | None = None,
) -> PrometheusServer:
    """Write the local config and rules into `workdir` and start Prometheus on `port`
    (a free one by default) with its data there; returns once /-/ready answers."""
    config = write_local_files(workdir, service_targets, interval, for_overrides)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            prometheus_command(config, workdir / "data", port),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = PrometheusServer(url, process, log)
    try:
        wait_ready("Prometheus", process, url, log, START_TIMEOUT, ready_path="/-/ready")
    except BaseException:
        server.stop()
        raise
    return server
