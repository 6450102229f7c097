"""The four services as OS processes of a local stack (the e2e and chaos tests, the bench):
their names, the environment that wires one to the servers, and start / ready / stop / log
tail. Processes are stopped by their PID only (SIGTERM, then SIGKILL after a bound).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

import httpx

from infra.devstack._util import DevstackError, wait_until
from infra.service_defaults import DEFAULTS

SERVICES = tuple(DEFAULTS)
# The default MONGO_DATABASE of each service; a stack prefixes them with its run id.
DATABASES = {service: defaults.database for service, defaults in DEFAULTS.items()}


# The internal token of the notification API in local stacks (tests, the bench read any
# order's notifications with it). Public, so only ever used with ENVIRONMENT=test.
LOCAL_INTERNAL_TOKEN = "local-stack-internal-token-not-for-production"
# Local stacks deliver webhooks to receivers on 127.0.0.1 and drive load from one address with
# a few customers (chaos suite, bench): loopback is allow-listed and the per-customer and
# per-address limits are far above what they send. Tests of the limits set their own.
LOCAL_STACK_SETTINGS = {
    "WEBHOOK_ALLOWED_CIDRS": '["127.0.0.0/8", "::1/128"]',
    "NOTIFICATION_INTERNAL_TOKEN": LOCAL_INTERNAL_TOKEN,
    "ORDER_ORDERS_PER_CUSTOMER": "100000",
    "ORDER_ORDERS_PER_ADDRESS": "100000",
    "ORDER_REGISTRATIONS_PER_ADDRESS": "10000",
    "ORDER_MAX_OPEN_ORDERS_PER_CUSTOMER": "100000",
    # Every login counts against its address (order_service/adapters/sessions.py), and the
    # chaos suite's pipelines share one Redis DB: its logins from 127.0.0.1 passed the default
    # 50 per 5 minutes once its layer ran beside the others.
    "ORDER_LOGIN_FAILURES_PER_ADDRESS": "100000",
}


def service_env(
    *, amqp_url: str, mongo_url: str, database: str, redis_url: str, http_port: int
) -> dict[str, str]:
    """This process's environment plus what wires a service to the stack's servers."""
    return {
        **os.environ,
        **LOCAL_STACK_SETTINGS,
        # Explicit: unset means production, which refuses the local servers' defaults.
        "ENVIRONMENT": "test",
        "AMQP_URL": amqp_url,
        "MONGO_URL": mongo_url,
        "MONGO_DATABASE": database,
        "REDIS_URL": redis_url,
        "HTTP_PORT": str(http_port),
    }


def launch(argv: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout and stderr appended to `log_path` and no stdin."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv, env=dict(env), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def wait_ready(
    name: str,
    process: subprocess.Popen[bytes],
    url: str,
    log_path: Path,
    timeout_s: float,
    interval_s: float = 0.1,
    ready_path: str = "/ready",
) -> None:
    """Until `url` + `ready_path` answers 200 (bounded); fail at once, with the log's tail,
    if the process exits first."""

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail(log_path)}")
        try:
            return httpx.get(f"{url}{ready_path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout_s, f"{name} to be ready", interval=interval_s)
    except DevstackError as error:
        raise TimeoutError(f"{error}:\n{tail(log_path)}") from None


def stop_all(
    processes: Mapping[str, subprocess.Popen[bytes]],
    sig: signal.Signals = signal.SIGTERM,
    timeout_s: float = 20.0,
) -> dict[str, int]:
    """Send `sig` to every process still running, then wait for each (SIGKILL after
    `timeout_s`); their exit codes by name."""
    for process in processes.values():
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # exited since the poll
                process.send_signal(sig)
    codes: dict[str, int] = {}
    for name, process in processes.items():
        try:
            codes[name] = process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            codes[name] = process.wait(5)
    return codes


def tail(log_path: Path, lines: int = 40) -> str:
    """The last `lines` of a log, or "" if it does not exist."""
    if not log_path.exists():
        return ""
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def replica_names(service: str, replicas: int = 1) -> list[str]:
    """Names of `replicas` processes of `service`: the first keeps the service's name (one
    replica is named as it always was), the others are `<service>-2`, `<service>-3`, ..."""
    if replicas < 1:
        raise ValueError("at least one replica")
    return [service, *(f"{service}-{n}" for n in range(2, replicas + 1))]


def service_of(replica: str) -> str:
    """The service a process name of `replica_names` belongs to."""
    return replica.split("-", 1)[0]
