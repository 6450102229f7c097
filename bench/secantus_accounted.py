"""`python -m bench.secantus_accounted --counts-port N <infra.devstack.secantus_daemon options>`:
the project's SecantusDB daemon, with the CPU each command costs it counted (bench only).

SecantusDB serves every client connection on a thread of its own, so the CPU clock of the
thread (`time.thread_time_ns`) around one command is that command's CPU, the GIL waits left
out. The sums are kept per `<command>.<collection>` and served as JSON on 127.0.0.1:N by
bench.counters, as the services' round trips are: `server_us.<key>` (microseconds) and
`server_calls.<key>`. What falls outside a command (reading the socket, decoding the message,
encoding the reply, background threads) is the rest of the process's CPU, which the bench
reads from /proc as for every process.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench import counters
from infra.devstack import secantus_daemon


def install() -> None:
    """Count the CPU of each command where the server hands it to its command table."""
    import secantus.server

    dispatch = secantus.server.dispatch

    def counted(body: dict[str, Any], ctx: Any) -> Any:
        began = time.thread_time_ns()
        try:
            return dispatch(body, ctx)
        finally:
            name = next(iter(body), "")
            target = body.get(name)
            key = f"{name}.{target}" if isinstance(target, str) else name
            counters.count(f"server_us.{key}", (time.thread_time_ns() - began) // 1000)
            counters.count(f"server_calls.{key}")

    secantus.server.dispatch = counted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.secantus_accounted")
    parser.add_argument("--counts-port", type=int, required=True)
    args, daemon_args = parser.parse_known_args(argv)
    install()
    counters.serve(args.counts_port)
    return secantus_daemon.main(daemon_args)


if __name__ == "__main__":
    sys.exit(main())
