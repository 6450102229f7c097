"""MongoDB for development and tests: probe a URL, or run SecantusDB as a child process.

SecantusDB is a MongoDB wire-protocol server (dev extra only, never a runtime dependency).
It runs as a separate OS process rather than in-thread so that tests and `infra/bin/up` can
stop and restart it like a real mongod, which the chaos tests rely on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from infra.devstack._util import DevstackError, free_port, run, stop_child, tcp_open, wait_until

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def mongo_reachable(url: str, timeout_ms: int = 1000) -> bool:
    """True if a server at `url` answers `ping` within roughly `timeout_ms`."""
    client: MongoClient[dict[str, object]] = MongoClient(
        url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def docker_engine_available(timeout: float = 5.0) -> bool:
    """True only if a Docker *engine* answers; a bare docker client is not enough."""
    probe = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=timeout)
    return probe.returncode == 0


# Wherever the project itself starts SecantusDB (infra/bin/up, the tests, the bench), its URL
# turns retryable writes off. SecantusDB 0.7.0b3 keeps the reply of every retryable write (up
# to 10,000) in a dict that it scans on each write, so with them on its cost per write grows
# about 20x within one run, and every figure would measure that registry. A real mongod keeps
# one record per session: production URLs leave retryable writes on (PyMongo's default).
SECANTUS_URL_OPTIONS = "directConnection=true&retryWrites=false"


def secantus_url(port: int, host: str = "127.0.0.1") -> str:
    return f"mongodb://{host}:{port}/?{SECANTUS_URL_OPTIONS}"


def with_retry_writes(url: str, enabled: bool) -> str:
    """`url` with its retryWrites option set to `enabled` (added if absent)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "retrywrites"]
    query.append(("retryWrites", "true" if enabled else "false"))
    return urlunsplit(parts._replace(query=urlencode(query)))


# Through secantus_daemon, which gives SecantusDB the deploy's transaction lifetime (10 s, not
# 60); a wrapper of it may take its place (the bench's, which counts each command's CPU).
DAEMON = ("-m", "infra.devstack.secantus_daemon")


def _secantus_command(port: int, storage_path: str, daemon: tuple[str, ...]) -> list[str]:
    # The venv we run in, so the pinned secantusdb is used and not whatever is on PATH.
    return [sys.executable, *daemon,
            "--host", "127.0.0.1", "--port", str(port), "--storage-path", storage_path]  # fmt: skip


@dataclass
class SecantusHandle:
    """A SecantusDB child process (infra.devstack.secantus_daemon). `.restart()` keeps the port
    and (on-disk) data."""

    port: int
    storage_path: str
    log_path: Path
    daemon: tuple[str, ...] = DAEMON
    pid: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return secantus_url(self.port)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Launch the process and wait until it answers `ping` (bounded)."""
        if tcp_open("127.0.0.1", self.port):
            # Never "succeed" by pinging somebody else's server on that port.
            raise DevstackError(f"port {self.port} is already in use; cannot start SecantusDB")
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                _secantus_command(self.port, self.storage_path, self.daemon),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches our parent, which then stops
                # this process deliberately (after the services), instead of racing it.
                start_new_session=True,
            )
        self.pid = self._proc.pid

        def ready() -> bool:
            if not self.alive():
                raise DevstackError(f"SecantusDB exited during startup:\n{self.log_tail()}")
            return mongo_reachable(self.url, timeout_ms=500)

        try:
            wait_until(ready, START_TIMEOUT, f"SecantusDB on port {self.port}", interval=0.2)
        except DevstackError:
            self.stop()
            raise

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (SecantusDB then closes its storage cleanly), SIGKILL if it hangs; by PID."""
        if self._proc is not None:
            stop_child(self._proc, timeout)

    def restart(self) -> None:
        self.stop()
        # The listening socket is gone once the process is; this only covers a slow exit.
        wait_until(lambda: not tcp_open("127.0.0.1", self.port), STOP_TIMEOUT, "port release")
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass(frozen=True)
class MongoServer:
    """What the `mongo_server` test fixture hands out."""

    url: str
    # Set only when the tests own the process, so chaos tests can stop/restart it.
    secantus: SecantusHandle | None


def start_secantus(
    port: int | None = None,
    storage_path: str | Path = ":memory:",
    log_path: str | Path | None = None,
    daemon: tuple[str, ...] = DAEMON,
) -> SecantusHandle:
    """Start SecantusDB on 127.0.0.1 and return once it answers `ping`.

    `storage_path` is a directory (created if missing, data survives restarts) or ":memory:";
    `daemon` is what follows the interpreter on the command line, before the server's options.
    """
    if storage_path != ":memory:":
        Path(storage_path).mkdir(parents=True, exist_ok=True)
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="secantusd-", suffix=".log")
        os.close(fd)
        log_path = name
    handle = SecantusHandle(
        port=port or free_port(),
        storage_path=str(storage_path),
        log_path=Path(log_path),
        daemon=daemon,
    )
    handle.start()
    return handle
