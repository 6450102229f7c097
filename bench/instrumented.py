"""`python -m bench.instrumented <service>`: run a service with round-trip counters.

Installs bench.counters (MongoDB listener, Redis and aio-pika patches) before the service
creates its clients, serves the counts on BENCH_COUNTS_PORT, then runs the service's own
`main.run()` unchanged, so what is measured is the shipped composition root.
"""

from __future__ import annotations

import importlib
import os
import sys

from bench import counters
from infra.devstack.services import SERVICES


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0] not in SERVICES:
        sys.exit(f"usage: python -m bench.instrumented {{{','.join(SERVICES)}}}")
    counters.install_all()
    port = int(os.environ.get("BENCH_COUNTS_PORT", "0"))
    if port:
        counters.serve(port)
    module = importlib.import_module(f"{argv[0]}_service.main")
    module.run()


if __name__ == "__main__":
    main(sys.argv[1:])
