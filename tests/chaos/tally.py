"""The accounting of a chaos run, from what the services stored: every order, every capture
and refund in the gateway's ledger, every stock level and notification."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

TERMINAL = ("CONFIRMED", "REJECTED", "CANCELLED")
# An order is hung if it was not terminal this long after its deadline (the sweep runs every
# second or so in these runs; the margin absorbs a loaded machine and a restarting process).
HUNG_MARGIN = timedelta(seconds=15)
Document = dict[str, Any]


@dataclass
class Tally:
    submitted: int
    orders: int
    statuses: Counter[str]
    lost: int
    double_charged: int
    # Captured, not refunded, and the order did not end CONFIRMED: money kept for nothing.
    charged_unconfirmed: int
    # Captures given back (each for an order that ended cancelled).
    refunded: int
    # Refunded more than once, or refunded although the order was confirmed.
    double_refunded: int
    # Refunded at the gateway but never announced (no REFUNDED payment or no notification).
    refund_unannounced: int
    # Not terminal by deadline_at + HUNG_MARGIN (or not terminal at all once past it).
    hung: int
    oversold: int
    stock_mismatch: dict[str, tuple[int, int]]
    unnotified: int
    dlq: int
    # Longest time without any order reaching its end, between the first and the last ending
    # (printed, not asserted: it depends on the machine's load).
    longest_stall_s: float = 0.0
    # Each dead letter counted in `dlq`, explained: its queue, event and why it died.
    dead_letters: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"submitted={self.submitted} stored={self.orders} "
            f"confirmed={self.statuses['CONFIRMED']} rejected={self.statuses['REJECTED']} "
            f"cancelled={self.statuses['CANCELLED']} lost={self.lost} "
            f"double_charged={self.double_charged} charged_unconfirmed={self.charged_unconfirmed} "
            f"refunded={self.refunded} double_refunded={self.double_refunded} "
            f"refund_unannounced={self.refund_unannounced} hung={self.hung} "
            f"oversold={self.oversold} stock_mismatch={len(self.stock_mismatch)} "
            f"unnotified={self.unnotified} dlq={self.dlq} "
            f"longest_stall={self.longest_stall_s:.1f}s"
        )

    def report(self) -> str:
        """The tally line, then one line per dead letter (a dlq count is never unexplained)."""
        return "\n".join([self.line(), *(f"  dead letter {d}" for d in self.dead_letters)])


@dataclass
class Stored:
    """What the four services stored, read after the run."""

    orders: dict[str, Document]
    ledger: list[Document]
    payments: dict[str, Document]
    stock: dict[str, int]
    notifications: list[Document]


def count(
    stored: Stored,
    accepted: list[str],
    initial_stock: int,
    dlq: int,
    now: datetime,
    dead_letters: list[str] | None = None,
) -> Tally:
    orders = stored.orders
    statuses = Counter(d["status"] for d in orders.values())
    lost = sum(1 for i in accepted if i not in orders or orders[i]["status"] not in TERMINAL)
    money = _money(stored)
    confirmed_qty: Counter[str] = Counter()
    for order in orders.values():
        if order["status"] == "CONFIRMED":
            for line in order["lines"]:
                confirmed_qty[line["sku"]] += line["quantity"]
    mismatch = {
        sku: (available, initial_stock - confirmed_qty[sku])
        for sku, available in stored.stock.items()
        if available != initial_stock - confirmed_qty[sku]
    }
    notified = {d["order_id"] for d in stored.notifications}
    return Tally(
        submitted=len(accepted),
        orders=len(orders),
        statuses=statuses,
        lost=lost,
        **money,
        hung=sum(1 for d in orders.values() if _hung(d, now)),
        oversold=sum(1 for available in stored.stock.values() if available < 0),
        stock_mismatch=mismatch,
        unnotified=sum(
            1 for i, d in orders.items() if d["status"] in TERMINAL and i not in notified
        ),
        dlq=dlq,
        longest_stall_s=_longest_stall(orders),
        dead_letters=dead_letters or [],
    )


def _longest_stall(orders: dict[str, Document]) -> float:
    endings = sorted(d["updated_at"] for d in orders.values() if d["status"] in TERMINAL)
    return max(((b - a).total_seconds() for a, b in pairwise(endings)), default=0.0)


def _money(stored: Stored) -> dict[str, int]:
    told_refunded = {d["order_id"] for d in stored.notifications if d["kind"] == "payment_refunded"}
    counts = Counter[str]()
    for entry in stored.ledger:
        order_id = entry["_id"].removeprefix("order-")
        status = stored.orders.get(order_id, {}).get("status")
        captures, refunds = entry.get("captures", 0), entry.get("refunds", 0)
        counts["double_charged"] += max(0, captures - 1)
        counts["charged_unconfirmed"] += captures > 0 and refunds == 0 and status != "CONFIRMED"
        counts["refunded"] += refunds > 0
        counts["double_refunded"] += refunds > 1 or (refunds > 0 and status == "CONFIRMED")
        announced = stored.payments.get(order_id, {}).get("status") == "REFUNDED"
        counts["refund_unannounced"] += refunds > 0 and not (
            announced and order_id in told_refunded
        )
    names = ("double_charged", "charged_unconfirmed", "refunded", "double_refunded",
             "refund_unannounced")  # fmt: skip
    return {name: counts[name] for name in names}


def _hung(order: Document, now: datetime) -> bool:
    deadline_at = order.get("deadline_at")
    if deadline_at is None:
        return order["status"] not in TERMINAL
    limit: datetime = deadline_at + HUNG_MARGIN
    if order["status"] not in TERMINAL:
        return now > limit
    ended_at: datetime = order["history"][-1]["at"]
    return ended_at > limit
