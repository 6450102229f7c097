"""MongoDB through PyMongo's AsyncMongoClient (the maintained successor of motor)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from infra.settings import MongoSettings

Document = dict[str, Any]


def create_mongo_client(settings: MongoSettings, app_name: str) -> AsyncMongoClient[Document]:
    # tz_aware: dates come back as aware UTC datetimes, the same type the code writes.
    return AsyncMongoClient(
        settings.url,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.timeout_ms,
        connectTimeoutMS=settings.timeout_ms,
        retryWrites=True,
    )


async def mongo_ping(client: AsyncMongoClient[Document]) -> bool:
    try:
        await client.admin.command("ping")
    except Exception:
        return False
    return True
