"""A throwaway RabbitMQ node of our own, for a test that needs broker configuration the shared
development node must not get. Own node name, ports, data, logs and Erlang cookie (so nothing
can reach the default node, nor it this one); stopped by its own name and PID."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra import devstack

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
START_TIMEOUT_S = 90.0


def available() -> bool:
    return SERVER.exists() and CTL.exists()


@contextmanager
def scratch_node(config: str, workdir: Path) -> Iterator[str]:
    """Start a node with `config` (rabbitmq.conf syntax); yield its AMQP URL (guest works
    from loopback)."""
    home = workdir / "home"
    home.mkdir(parents=True)
    cookie = home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(16))
    cookie.chmod(0o400)
    port, dist_port = devstack.free_port(), devstack.free_port()
    node = f"itest-{uuid.uuid4().hex[:6]}@localhost"
    (workdir / "rabbitmq.conf").write_text(f"{config}\nlisteners.tcp.default = 127.0.0.1:{port}\n")
    (workdir / "enabled_plugins").write_text("[].\n")
    env = {
        **os.environ,
        "HOME": str(home),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
    }
    with (workdir / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [str(SERVER)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        devstack.wait_until(
            lambda: process.poll() is None and devstack.tcp_open("127.0.0.1", port),
            START_TIMEOUT_S,
            f"scratch RabbitMQ node {node}",
        )
        yield f"amqp://guest:guest@127.0.0.1:{port}/"
    finally:
        subprocess.run(
            [str(CTL), "-n", node, "stop"], env=env, capture_output=True, timeout=60, check=False
        )
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # our own session, started above
            process.wait(timeout=10)
