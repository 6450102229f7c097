"""Small process/network helpers shared by the devstack modules.

Everything here is stdlib only so `python -m infra.devstack` works before the
app's own dependencies matter.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# What an `ensure_*` of a server did: found it answering, started it, or installed it first.
Outcome = Literal["running", "started", "installed"]


class DevstackError(RuntimeError):
    """A backing server could not be reached or started; the message says what to do."""


def log(msg: str) -> None:
    # flush: the bash wrappers interleave our output with their own.
    print(f"[devstack] {msg}", flush=True)


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def is_local(host: str) -> bool:
    # Only loopback servers are ours to install or start; anything else belongs to someone else.
    return host in LOCAL_HOSTS


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# Below Linux's ephemeral range (32768-60999), where the kernel picks the local port of every
# outgoing connection and of every bind to port 0: a port from that range can be taken before
# its server binds it, seconds later (a service once failed to start so, with three test
# sessions running). DEVSTACK_PORTS ("first-last") narrows it: infra/bin/test gives each of its
# sessions a range of its own.
DEFAULT_FREE_PORTS = range(20000, 32768)
# A port handed out stays claimed for CLAIM_S, across processes: the claim is a Unix socket bound
# to a name in Linux's abstract namespace, which no file backs and the kernel frees when the
# socket closes or its process dies, however it dies. Any process's free_port skips a claimed
# port, so two processes that pick side by side never get the same one within the seconds
# before its server binds it (two test sessions once did); after CLAIM_S the server's own bind
# holds it.
CLAIM_S = 60.0
CLAIM_PREFIX = "\0order-pipeline-devstack-port-"


def port_range(spec: str | None) -> range:
    """The ports of a "first-last" spec, inside DEFAULT_FREE_PORTS; the default if None."""
    if not spec:
        return DEFAULT_FREE_PORTS
    first, sep, last = spec.partition("-")
    if not (sep and first.strip().isdigit() and last.strip().isdigit()):
        raise DevstackError(f"DEVSTACK_PORTS={spec!r}: expected first-last, e.g. 20000-24255")
    ports = range(int(first), int(last) + 1)
    if not ports or ports.start < DEFAULT_FREE_PORTS.start or ports.stop > DEFAULT_FREE_PORTS.stop:
        raise DevstackError(
            f"DEVSTACK_PORTS={spec!r}: not a range inside "
            f"{DEFAULT_FREE_PORTS.start}-{DEFAULT_FREE_PORTS.stop - 1}"
        )
    return ports


FREE_PORTS = port_range(os.environ.get("DEVSTACK_PORTS"))
_handed_out: set[int] = set()
_claims: deque[tuple[float, socket.socket]] = deque()


def free_port() -> int:
    """A port nobody listens on right now, that no process has claimed in the last CLAIM_S and
    this process never handed out before; claimed by this process from now on."""
    _release_claims(older_than=time.monotonic() - CLAIM_S)
    for _ in range(200):
        port = random.choice(FREE_PORTS)
        if port in _handed_out or not _claim(port):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # its claim stays: somebody serves on it
        _handed_out.add(port)
        return port
    raise DevstackError(f"no free port in {FREE_PORTS.start}-{FREE_PORTS.stop - 1}")


def _claim(port: int) -> bool:
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"{CLAIM_PREFIX}{port}")
    except OSError:  # another process claimed it
        claim.close()
        return False
    _claims.append((time.monotonic(), claim))
    return True


def _release_claims(older_than: float) -> None:
    while _claims and _claims[0][0] <= older_than:
        _claims.popleft()[1].close()


def stop_child(process: subprocess.Popen[Any], timeout_s: float) -> int | None:
    """Stop a server this process started, by its PID: SIGTERM (its clean shutdown), SIGKILL
    past `timeout_s`. Its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
    return process.returncode


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    """Poll `check` until it is true; every wait in devstack is bounded so scripts never hang."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() >= deadline:
            raise DevstackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def run(cmd: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a command capturing output; a missing binary (rc 127) or a hang (124) is a failure."""
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        return subprocess.CompletedProcess(cmd, 127, "", f"{cmd[0]}: not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", f"{cmd[0]}: timed out after {timeout}s")


def have(binary: str) -> bool:
    # Debian puts rabbitmq-server and friends in /usr/sbin, which a non-root PATH may lack.
    return shutil.which(binary) is not None or os.path.exists(f"/usr/sbin/{binary}")


def root_prefix() -> list[str]:
    """How to become root for apt and the RabbitMQ CLI: nothing if we are root, else sudo.

    Without sudo we try as ourselves and let the command's own error explain.
    """
    if os.geteuid() != 0 and shutil.which("sudo"):
        return ["sudo"]
    return []


def apt_install(*packages: str) -> None:
    """Install Debian packages non-interactively; output streams through so users see progress."""
    log(f"installing {' '.join(packages)} with apt-get (this takes a minute)")
    env = ["env", "DEBIAN_FRONTEND=noninteractive"]
    for cmd in (
        [*root_prefix(), *env, "apt-get", "update"],
        [*root_prefix(), *env, "apt-get", "install", "-y", *packages],
    ):
        try:
            subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, timeout=900)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise DevstackError(f"`{' '.join(cmd)}` failed: {exc}") from exc


def install_server(package: str, answers: Callable[[], bool]) -> tuple[Outcome, bool]:
    """Install the Debian package of a local server when its binary is missing. Returns the
    outcome a start that follows reports ("installed", else "started") and whether the server
    already answers: a package's init script may start it on install."""
    if have(package):
        return "started", False
    apt_install(package)
    return "installed", answers()
