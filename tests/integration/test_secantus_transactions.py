"""The project's SecantusDB reaps a transaction whose client died after the deploy's
transaction lifetime (infra/compose.yaml: 10 s), not mongod's default 60 s: a SIGKILLed
inventory stalls its SKUs' reservations that long (infra.devstack.secantus_daemon)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from infra import devstack
from infra.devstack.secantus_daemon import TRANSACTION_LIFETIME_S

pytestmark = pytest.mark.integration
# Half mongod's default transactionLifetimeLimitSeconds (60 s): a lock held this long means
# the deploy's lifetime was not applied (a loaded machine may reap a few seconds late).
NOT_THE_DEFAULT_S = 30.0
# Writes one document inside a transaction, then dies without committing or ending its session.
DIES_IN_A_TRANSACTION = """
import os, signal, sys
from pymongo import MongoClient
client = MongoClient(sys.argv[1])
with client.start_session() as session:
    session.start_transaction()
    client.shop.stock.update_one({"_id": "SKU-1"}, {"$inc": {"available": -1}}, session=session)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def take_one(client: MongoClient[dict[str, object]]) -> bool:
    """One transactional decrement of SKU-1: True once committed, False on a write conflict."""
    with client.start_session() as session:
        try:
            session.start_transaction()
            client.shop.stock.update_one(
                {"_id": "SKU-1"}, {"$inc": {"available": -1}}, session=session
            )
            session.commit_transaction()
            return True
        except OperationFailure as failure:
            if not failure.has_error_label("TransientTransactionError"):
                raise
            return False


def test_a_transaction_of_a_killed_client_frees_its_documents_after_the_deploys_lifetime(
    tmp_path: Path,
) -> None:
    handle = devstack.start_secantus(log_path=tmp_path / "secantusd.log")
    client: MongoClient[dict[str, object]] = MongoClient(handle.url)
    try:
        client.shop.stock.insert_one({"_id": "SKU-1", "available": 10})
        killed = subprocess.run([sys.executable, "-c", DIES_IN_A_TRANSACTION, handle.url])
        assert killed.returncode == -9
        died_at = time.monotonic()
        assert not take_one(client)  # its uncommitted write still holds the document
        while not take_one(client):
            assert time.monotonic() - died_at < NOT_THE_DEFAULT_S, "not reaped in time"
            time.sleep(0.5)
        held_s = time.monotonic() - died_at
        print(f"\nheld {held_s:.1f} s after the client died (lifetime {TRANSACTION_LIFETIME_S} s)")
        assert client.shop.stock.find_one({"_id": "SKU-1"}) == {"_id": "SKU-1", "available": 9}
    finally:
        client.close()
        handle.stop()
