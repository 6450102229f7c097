"""Runs one service process: logging, tracing, then uvicorn serving the app.

uvicorn owns SIGINT/SIGTERM: it stops accepting requests, finishes the ones in flight, then
runs the app's lifespan exit, which stops the consumers and flushes the outbox (infra.runtime).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from pydantic_settings import BaseSettings

from infra.http_server import server_config
from infra.observability.logging import configure_logging
from infra.observability.tracing import configure_tracing
from infra.settings import RuntimeSettings, SettingsRefused

# Exit code of a process that refused its settings (not 1, which is any crash).
REFUSED_EXIT_CODE = 78  # EX_CONFIG in sysexits.h


def main(run: Callable[[], None]) -> None:
    """Entry point of a service process: refused settings end it with one clear line on
    stderr and exit code 78, not a traceback."""
    try:
        run()
    except SettingsRefused as refused:
        print(f"refusing to start: {refused}", file=sys.stderr)
        sys.exit(REFUSED_EXIT_CODE)


class ProxySettings(BaseSettings):
    # Peers (comma-separated addresses or CIDRs, or "*") whose X-Forwarded-For/-Proto headers
    # are believed: a load balancer in front. Empty (the default): none, so the client address
    # is the TCP peer's and a client cannot choose the rate-limit bucket it is counted in.
    # Passed to uvicorn explicitly: its own default trusts 127.0.0.1.
    forwarded_allow_ips: str = ""


def serve(app: FastAPI, settings: RuntimeSettings) -> None:
    configure_logging(settings.service, settings.log_level)
    # After logging, so a configured but missing OTLP exporter is reported as a JSON line.
    configure_tracing(settings.service, settings.tracing)
    # After its graceful shutdown uvicorn re-raises the signal it caught against the handler
    # that was installed before it. With these no-op handlers a completed graceful shutdown
    # ends the process with exit code 0 instead of dying by the signal.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    proxies = ProxySettings().forwarded_allow_ips.strip()
    config = server_config(
        app,
        settings.http,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or [],
        log_config=None,
        access_log=False,
        # Named, not "auto": a missing install fails at start instead of silently costing CPU.
        loop="uvloop",
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
