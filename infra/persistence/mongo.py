"""MongoDB through PyMongo's AsyncMongoClient (the maintained successor of motor)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from infra.settings import MongoSettings

Document = dict[str, Any]


def create_mongo_client(settings: MongoSettings, app_name: str) -> AsyncMongoClient[Document]:
    # tz_aware: dates come back as aware UTC datetimes, the same type the code writes.
    # Options the URL may carry (retryWrites, w, readPreference...) are never passed here:
    # PyMongo lets a keyword argument override the URL, so the URL could not turn them off.
    # Retryable writes are PyMongo's default; infra/devstack/mongo.py says where we turn
    # them off and why.
    return AsyncMongoClient(
        settings.url,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.timeout_ms,
        connectTimeoutMS=settings.timeout_ms,
    )


def client_settings(client: AsyncMongoClient[Document]) -> dict[str, str]:
    """The options in force in `client`, read back from the driver (not from our config)."""
    options = client.options
    return {
        "retry_writes": str(options.retry_writes).lower(),
        "retry_reads": str(options.retry_reads).lower(),
        "write_concern": str(options.write_concern.document or "default"),
        "read_preference": options.read_preference.name,
    }


async def mongo_ping(client: AsyncMongoClient[Document]) -> bool:
    try:
        await client.admin.command("ping")
    except Exception:
        return False
    return True


# Indexes earlier versions created that no query uses any more: each cost every write of its
# collection index work (over an ever-growing array for `outbox` and `inbox`), for nothing. The
# open-orders count that used `customer_id_1_status_1` moved to Redis; the sweep reads by
# `outbox_at`, not by the `outbox_pending` flag (infra.messaging.outbox).
RETIRED_INDEXES = (
    "outbox.occurred_at_1",
    "inbox.occurred_at_1",
    "customer_id_1_status_1",
    "outbox_pending_1",
)
INDEX_NOT_FOUND = 27


async def drop_retired_indexes(collection: AsyncCollection[Document]) -> None:
    for name in RETIRED_INDEXES:
        try:
            await collection.drop_index(name)
        except OperationFailure as error:
            if error.code != INDEX_NOT_FOUND:
                raise
