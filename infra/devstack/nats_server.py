"""NATS with JetStream (EVENT_BUS=nats): make sure the server at EVENT_BUS_URL answers with
JetStream enabled, starting a local `nats-server -js` with a store directory if needed
(installing Debian's `nats-server` when it is missing)."""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

from infra.devstack._util import (
    DevstackError,
    Outcome,
    apt_install,
    have,
    host_port,
    install_server,
    is_local,
    log,
    wait_until,
)

START_TIMEOUT = 30.0
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


def server_info(nats_url: str) -> dict[str, object] | None:
    """The INFO a NATS server greets a client with; None if nothing answers like one."""
    host, port = host_port(nats_url.split(",")[0], 4222)
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.settimeout(1)
            greeting = sock.recv(8192).decode(errors="replace")
    except OSError:
        return None
    keyword, _, body = greeting.partition(" ")
    if keyword != "INFO":
        return None
    try:
        info = json.loads(body)
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def nats_answers(nats_url: str) -> bool:
    """A NATS server answers there, with JetStream enabled."""
    info = server_info(nats_url)
    return info is not None and bool(info.get("jetstream"))


def start_nats(port: int, store_dir: Path, host: str = "127.0.0.1") -> subprocess.Popen[bytes]:
    """A `nats-server -js` of its own on `port`, storing in `store_dir`; the caller stops it
    (by its PID). Waits until it answers."""
    if not have("nats-server"):
        apt_install("nats-server")
    store_dir.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    cmd = [binary, "-js", "-a", host, "-p", str(port), "-sd", str(store_dir)]
    log(f"starting {shlex.join(cmd)}")
    with (store_dir / "nats-server.log").open("ab") as output:
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True
        )
    url = f"nats://{host}:{port}"
    try:
        wait_until(lambda: nats_answers(url), START_TIMEOUT, f"NATS JetStream at {host}:{port}")
    except DevstackError:
        process.kill()
        raise
    return process


def ensure_nats(nats_url: str, store_dir: Path) -> Outcome:
    """Return "running" if a JetStream server already answers, else install/start a local
    one storing in `store_dir` (left running)."""
    host, port = host_port(nats_url.split(",")[0], 4222)
    info = server_info(nats_url)
    if info is not None:
        if not info.get("jetstream"):
            raise DevstackError(f"NATS at {host}:{port} runs without JetStream (start it with -js)")
        log(f"NATS JetStream already running at {host}:{port}")
        return "running"
    if not is_local(host):
        raise DevstackError(f"NATS at {host}:{port} is not answering (check EVENT_BUS_URL)")
    outcome, answering = install_server("nats-server", lambda: nats_answers(nats_url))
    if answering:
        return outcome
    process = start_nats(port, store_dir, host)
    log(f"NATS started at {host}:{port} (left running; stop with `kill {process.pid}`)")
    return outcome
