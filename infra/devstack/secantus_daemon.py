"""SecantusDB's daemon with the deploy's transaction lifetime: `python -m
infra.devstack.secantus_daemon --port N --storage-path DIR [--transaction-lifetime-s S]`.

A transaction whose client died (a SIGKILLed service) keeps its write locks until the server
reaps it after its lifetime. mongod's `transactionLifetimeLimitSeconds` defaults to 60 s and
the deploy sets 10 (infra/compose.yaml). SecantusDB reaps on the same rule, but its daemon
(`secantusd-py`, 0.7.0b3) offers no flag for the lifetime, only its server class does; so the
project's SecantusDB runs through this module, with the deploy's figure, and a killed
inventory stalls the reservations of its SKUs for as long as it would in production, not six
times longer. Everything else is as `secantusd-py --host H --port N --storage-path DIR`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from secantus.server import SecantusDBServer

# As the deploy's mongod (infra/compose.yaml: --setParameter transactionLifetimeLimitSeconds=10).
TRANSACTION_LIFETIME_S = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.devstack.secantus_daemon")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage-path", required=True, help='a directory, or ":memory:"')
    parser.add_argument("--transaction-lifetime-s", type=float, default=TRANSACTION_LIFETIME_S)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = SecantusDBServer(
        host=args.host,
        port=args.port,
        storage_path=args.storage_path,
        # The daemon's defaults: a single-node replica set named "secantus", which the
        # drivers need for transactions and change streams.
        replica_set_name="secantus",
        enable_test_commands=False,
        transaction_lifetime_seconds=args.transaction_lifetime_s,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop()  # closes the storage cleanly, as the daemon does on SIGTERM
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    server.start()
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
