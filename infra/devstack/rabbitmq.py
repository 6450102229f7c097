"""RabbitMQ: make sure a broker with the management API answers, and manage test vhosts.

The management API matters because tests isolate themselves in a fresh vhost per run
and the chaos/shovel tooling drives the broker through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from infra.devstack._util import (
    DevstackError,
    Outcome,
    have,
    host_port,
    install_server,
    is_local,
    log,
    root_prefix,
    run,
    tcp_open,
    wait_until,
)

# rabbitmq_prometheus: the broker's own metrics (queue depth, consumers) the alert rules need,
# on PROMETHEUS_PORT; /metrics/per-object gives them per queue without a config change.
PLUGINS = (
    "rabbitmq_management",
    "rabbitmq_shovel",
    "rabbitmq_shovel_management",
    "rabbitmq_prometheus",
)
PROMETHEUS_PORT = 15692
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Management:
    """Where the management HTTP API lives; env overrides let a non-default broker be used."""

    url: str = "http://127.0.0.1:15672"
    user: str = "guest"
    password: str = "guest"

    @classmethod
    def from_env(cls) -> Management:
        return cls(
            url=os.environ.get("RABBITMQ_MANAGEMENT_URL", cls.url).rstrip("/"),
            user=os.environ.get("RABBITMQ_MANAGEMENT_USER", cls.user),
            password=os.environ.get("RABBITMQ_MANAGEMENT_PASSWORD", cls.password),
        )

    def request(
        self, method: str, path: str, json: object = None, timeout_s: float = 5.0
    ) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.url}/api{path}",
            json=json,
            auth=(self.user, self.password),
            timeout=timeout_s,
        )

    def answering(self) -> bool:
        try:
            return self.request("GET", "/overview").status_code == 200
        except httpx.HTTPError:
            return False


@dataclass(frozen=True)
class RabbitVhost:
    """What the `rabbitmq_vhost` test fixture hands out."""

    url: str  # AMQP URL pointing at `vhost`
    vhost: str
    management: Management  # the management API of the broker that owns `vhost`


def _ping() -> bool:
    # Node-level health; only meaningful for a broker on this machine. Needs the node's
    # Erlang cookie, hence root (the Debian wrapper then switches to the rabbitmq user).
    return run([*root_prefix(), "rabbitmq-diagnostics", "-q", "ping"], timeout=15).returncode == 0


def _enable_plugins(offline: bool = False) -> None:
    flags = ["--offline"] if offline else []
    cmd = [*root_prefix(), "rabbitmq-plugins", "enable", *flags, *PLUGINS]
    result = run(cmd, timeout=60)
    if result.returncode != 0:
        raise DevstackError(f"`{' '.join(cmd)}` failed:\n{result.stdout}{result.stderr}")


def ensure_rabbitmq(amqp_url: str, mgmt: Management | None = None) -> Outcome:
    """Return "running" if it already answered, else install/start a local broker.

    Raises DevstackError for a remote broker that does not answer: that is not ours to start.
    """
    mgmt = mgmt or Management.from_env()
    host, port = host_port(amqp_url, 5672)
    local = is_local(host)

    if tcp_open(host, port):
        # A local broker without the CLI (e.g. a container on 127.0.0.1) is judged by TCP.
        has_cli = local and have("rabbitmq-diagnostics")
        if has_cli:
            # The port can be open while the node is still booting; give it the same bound.
            wait_until(_ping, START_TIMEOUT, "`rabbitmq-diagnostics -q ping` on this machine")
        if not (mgmt.answering() and tcp_open(host, PROMETHEUS_PORT)):
            if not has_cli:
                log(f"management API at {mgmt.url} not answering and not ours to configure")
                return "running"
            # `enable` on a running node starts the plugins in place: no restart.
            log(f"enabling plugins {', '.join(PLUGINS)}")
            _enable_plugins()
            wait_until(mgmt.answering, START_TIMEOUT, f"RabbitMQ management API at {mgmt.url}")
            wait_until(
                lambda: tcp_open(host, PROMETHEUS_PORT),
                START_TIMEOUT,
                f"RabbitMQ Prometheus metrics on {host}:{PROMETHEUS_PORT}",
            )
        log(f"RabbitMQ already running at {host}:{port}")
        return "running"

    if not local:
        raise DevstackError(f"RabbitMQ at {host}:{port} is not reachable (check AMQP_URL)")

    outcome, answering = install_server("rabbitmq-server", lambda: tcp_open(host, port))
    if answering:
        ensure_rabbitmq(amqp_url, mgmt)  # the plugins, as for a node found running
        return outcome
    if outcome == "started" and _ping():
        raise DevstackError(f"a RabbitMQ node is running here but {host}:{port} is closed")

    # Enabling offline before boot means the management listener comes up with the node.
    _enable_plugins(offline=True)
    log("starting rabbitmq-server -detached")
    result = run([*root_prefix(), "rabbitmq-server", "-detached"], timeout=60)
    if result.returncode != 0:
        raise DevstackError(f"rabbitmq-server -detached failed:\n{result.stdout}{result.stderr}")
    wait_until(_ping, START_TIMEOUT, "rabbitmq-diagnostics ping")
    wait_until(lambda: tcp_open(host, port), START_TIMEOUT, f"AMQP port {host}:{port}")
    wait_until(mgmt.answering, START_TIMEOUT, f"RabbitMQ management API at {mgmt.url}")
    log(f"RabbitMQ started at {host}:{port} (left running; stop with `rabbitmqctl stop`)")
    return outcome


# A vhost is created on every node and deleted with all its queues: deleting a chaos pipeline's
# (68 quorum queues) took over 5 s on a busy machine, and a node waits up to 48 s for a new one.
VHOST_TIMEOUT_S = 60.0


def _vhost_path(name: str) -> str:
    return quote(name, safe="")


def create_vhost(name: str, mgmt: Management | None = None) -> None:
    """Create `name` and give the management user full rights on it (idempotent)."""
    mgmt = mgmt or Management.from_env()
    vhost = _vhost_path(name)
    created = mgmt.request("PUT", f"/vhosts/{vhost}", timeout_s=VHOST_TIMEOUT_S)
    if created.is_error:  # the broker's reason, which raise_for_status would drop
        raise DevstackError(f"creating vhost {name!r}: {created.status_code} {created.text}")
    perms = {"configure": ".*", "write": ".*", "read": ".*"}
    user = quote(mgmt.user, safe="")
    mgmt.request("PUT", f"/permissions/{vhost}/{user}", json=perms).raise_for_status()


def delete_vhost(name: str, mgmt: Management | None = None) -> None:
    """Delete `name` with everything in it; an already-missing vhost is fine."""
    mgmt = mgmt or Management.from_env()
    response = mgmt.request("DELETE", f"/vhosts/{_vhost_path(name)}", timeout_s=VHOST_TIMEOUT_S)
    if response.status_code != 404:
        response.raise_for_status()


def vhost_exists(name: str, mgmt: Management | None = None) -> bool:
    mgmt = mgmt or Management.from_env()
    return mgmt.request("GET", f"/vhosts/{_vhost_path(name)}").status_code == 200
