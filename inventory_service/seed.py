"""Seed the demo catalog: `python -m inventory_service.seed [--reset] [--count N] [--stock N]`.

Idempotent: existing SKUs keep their stock unless --reset is given.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from pymongo import UpdateOne

from infra.cli import prog_name
from infra.persistence.mongo import create_mongo_client
from inventory_service.main import SERVICE

_KINDS = ["Mug", "T-Shirt", "Notebook", "Sticker", "Poster", "Cap", "Tote Bag", "Keychain"]
_COLOURS = ["Red", "Blue", "Green", "Black", "White", "Yellow", "Purple", "Orange"]


def demo_catalog(count: int, stock: int) -> list[dict[str, Any]]:
    return [
        {
            "_id": f"SKU-{n:04d}",
            "name": f"{_COLOURS[n % len(_COLOURS)]} {_KINDS[n % len(_KINDS)]}",
            "price_cents": 199 + (n * 137) % 4800,
            "available": stock,
        }
        for n in range(1, count + 1)
    ]


def catalog_upserts(count: int, stock: int, reset: bool) -> list[UpdateOne]:
    """One upsert per SKU of the demo catalog; `reset` puts existing SKUs back to `stock`."""
    operations = []
    for item in demo_catalog(count, stock):
        sku = item.pop("_id")
        if reset:
            update = {"$set": {**item, "reserved": 0}, "$inc": {"version": 1}}
        else:
            update = {"$setOnInsert": {**item, "reserved": 0, "version": 1}}
        operations.append(UpdateOne({"_id": sku}, update, upsert=True))
    return operations


async def seed(count: int = 60, stock: int = 100, reset: bool = False) -> int:
    settings, _ = SERVICE.load_settings()
    client = create_mongo_client(settings.mongo, "inventory-seed")
    try:
        operations = catalog_upserts(count, stock, reset)
        result = await client[settings.mongo.database]["stock"].bulk_write(operations)
        return result.upserted_count + result.modified_count
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog=prog_name("inventory_service.seed"), description=__doc__)
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--stock", type=int, default=100)
    parser.add_argument("--reset", action="store_true", help="reset stock of existing SKUs")
    args = parser.parse_args()
    changed = asyncio.run(seed(args.count, args.stock, args.reset))
    print(f"catalog: {args.count} SKUs, {changed} inserted or reset")


if __name__ == "__main__":
    main()
