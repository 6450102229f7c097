"""Rebuild the orders read model from the event store alone.

    python -m order_service.rebuild            rewrite every order's state from its events
    python -m order_service.rebuild --check    only compare; exit 1 if any order differs
    (or the console script: order-pipeline-rebuild [--check] [--progress | --no-progress])

The events are the ones each order document keeps: `outbox` (published, OrderPlaced first) and
`inbox` (consumed, with the time they were applied). Orders whose events were pruned by the
retention are skipped and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts.events import EVENT_SCHEMAS, OrderPlaced
from contracts.versions import upcast
from infra.cli import ProgressBar, add_progress_option, prog_name
from infra.persistence.mongo import create_mongo_client
from infra.settings import RuntimeSettings
from order_service.adapters.repository import to_state
from order_service.domain.model import Order
from order_service.domain.replay import Step, replay

Document = dict[str, Any]
# Fields the rebuild recomputes; updated_at is bookkeeping, not state.
COMPARED = ("customer_id", "status", "lines", "priced_lines", "total_cents", "currency",
            "payment_method", "created_at", "history", "parked_payment")  # fmt: skip


@dataclass
class Summary:
    orders: int = 0
    differing: int = 0
    skipped: int = 0


def rebuild_order(document: Document) -> Order | None:
    published = document.get("outbox", [])
    placed = next((e for e in published if e["event_type"] == "OrderPlaced"), None)
    if placed is None:
        return None
    steps = [_step(e, e["applied_at"]) for e in document.get("inbox", [])]
    steps += [  # cancellations the customer asked for: published, caused by no event
        _step(e, e["occurred_at"])
        for e in published
        if e["event_type"] == "OrderCancelled" and e.get("causation_id") is None
    ]
    placed_event = _step(placed, placed["occurred_at"]).event
    assert isinstance(placed_event, OrderPlaced)
    return replay(placed_event, placed["occurred_at"], steps)


def differences(document: Document, rebuilt: Order) -> list[str]:
    state = to_state(rebuilt)
    return [name for name in COMPARED if document.get(name) != state[name]]


async def rebuild_all(settings: RuntimeSettings, check: bool, progress: bool = False) -> Summary:
    client = create_mongo_client(settings.mongo, "order-rebuild")
    summary = Summary()
    try:
        orders = client[settings.mongo.database]["orders"]
        # An estimate is enough for a bar (and costs no scan); the loop counts exactly.
        bar = ProgressBar(await orders.estimated_document_count(), progress)
        async for document in orders.find({}):
            summary.orders += 1
            bar.update(summary.orders, f"orders, {summary.differing} differ")
            rebuilt = rebuild_order(document)
            if rebuilt is None:
                summary.skipped += 1
                continue
            differing = differences(document, rebuilt)
            if differing:
                summary.differing += 1
                bar.say(f"order {document['_id']}: {', '.join(differing)} differ")
                if not check:
                    state = {k: v for k, v in to_state(rebuilt).items() if k in COMPARED}
                    # A new version, so a running service's remembered copy cannot pass for
                    # the current one.
                    await orders.update_one(
                        {"_id": document["_id"]}, {"$set": state, "$inc": {"version": 1}}
                    )
        bar.close(summary.orders, f"orders, {summary.differing} differ")
    finally:
        await client.close()
    return summary


def _step(entry: Document, at: Any) -> Step:
    # Stored events keep the version they were written in: bring them to the current one.
    version, payload = upcast(entry["event_type"], entry["schema_version"], entry["payload"])
    schema = EVENT_SCHEMAS[(entry["event_type"], version)]
    return Step(at=at, event=schema.model_validate(payload), event_id=entry["event_id"])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=prog_name("order_service.rebuild"),
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on differences")
    add_progress_option(parser)
    args = parser.parse_args(argv)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    settings = RuntimeSettings.from_env("order", default_port=8000, default_database="orders")
    summary = asyncio.run(rebuild_all(settings, args.check, progress))
    verb = "differ" if args.check else "rewritten"
    print(f"orders={summary.orders} {verb}={summary.differing} skipped={summary.skipped}")
    sys.exit(1 if args.check and summary.differing else 0)


if __name__ == "__main__":
    main()
