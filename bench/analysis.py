"""Turns one phase's raw samples, outcomes and counter snapshots into the reported figures."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from bench.load import Clock, Sample
from bench.sink import Outcome
from bench.stack import MACHINE, Snapshot
from bench.stats import (
    diff_counts,
    per_item,
    percentile_series,
    rate,
    summarize,
    throughput_series,
)

KINDS = ("mongo", "psp", "amqp", "redis")
BUCKET_S = 1.0


def analyse_phase(
    samples: list[Sample],
    outcomes: dict[str, Outcome],
    clock: Clock,
    before: Snapshot | None,
    after: Snapshot | None,
) -> dict[str, Any]:
    accepted = [s for s in samples if s.status == 202 and s.order_id is not None]
    errors = Counter(str(s.status) for s in samples if s.status != 202)
    done = [(s, outcomes[s.order_id]) for s in accepted if s.order_id in outcomes]
    statuses = Counter(o.status for _, o in done)
    successful = statuses["CONFIRMED"]
    first = clock.wall(min((s.scheduled for s in samples), default=0.0))
    last_answer = clock.wall(max((s.answered for s in samples), default=0.0))
    last_done = max((o.recorded for _, o in done), default=first)
    span = last_done - first
    e2e = [1000 * (o.recorded - clock.wall(s.answered)) for s, o in done]
    to_sent = [1000 * (o.sent - clock.wall(s.answered)) for s, o in done if o.sent is not None]
    result: dict[str, Any] = {
        "sent": len(samples),
        "accepted": len(accepted),
        "errors": dict(errors),
        "completed": len(done),
        "not_completed": len(accepted) - len(done),
        "statuses": dict(statuses),
        "span_s": span,
        "orders_per_s": rate(len(done), span),
        "accepted_per_s": rate(len(accepted), last_answer - first),
        "accept_latency_ms": summarize([1000 * s.latency for s in accepted]).as_dict(),
        # How late the client itself sent (open loop): large values mean a starved client,
        # whose lateness the accept latency above includes by design.
        "send_lag_ms": summarize([1000 * (s.sent - s.scheduled) for s in samples]).as_dict(),
        "e2e_latency_ms": summarize(e2e).as_dict(),
        "e2e_to_sent_ms": summarize(to_sent).as_dict(),
        "series": _series(accepted, done, clock, first),
    }
    if before is not None and after is not None:
        result.update(_costs(before, after, successful, span))
        served = server_latency(before.post_orders, after.post_orders)
        if served is not None:
            result["server_latency"] = served
    return result


def server_latency(before: dict[float, float], after: dict[float, float]) -> dict[str, Any] | None:
    """The phase's POST /orders as the order service timed them (its histogram: from the
    request reaching the app to the response leaving it; without the client, the network and
    the wait for the service's event loop): the share within each bucket bound, and the
    bounds the 99th percentile lies between. None without requests or a histogram."""
    delta = {b: after[b] - before.get(b, 0.0) for b in sorted(after)}
    total = delta.get(math.inf, 0.0)
    if total <= 0:
        return None
    within = {1000 * b: n / total for b, n in delta.items() if b != math.inf}
    lower = 0.0
    for bound_ms, share in within.items():
        if share >= 0.99:
            return {"count": total, "within_ms": within, "p99_between_ms": (lower, bound_ms)}
        lower = bound_ms
    return {"count": total, "within_ms": within, "p99_between_ms": (lower, math.inf)}


def _series(
    accepted: list[Sample], done: list[tuple[Sample, Outcome]], clock: Clock, start: float
) -> dict[str, list[tuple[float, float]]]:
    times = [clock.wall(s.scheduled) for s in accepted]
    latencies = [1000 * s.latency for s in accepted]
    answered = [clock.wall(s.answered) for s, _ in done]
    e2e = [1000 * (o.recorded - clock.wall(s.answered)) for s, o in done]
    series = {
        f"accept_p{q}": percentile_series(times, latencies, start, BUCKET_S, q)
        for q in (50, 95, 99)
    }
    series.update(
        {f"e2e_p{q}": percentile_series(answered, e2e, start, BUCKET_S, q) for q in (50, 99)}
    )
    series["accepted_per_s"] = throughput_series(
        [clock.wall(s.answered) for s in accepted], start, BUCKET_S
    )
    series["completed_per_s"] = throughput_series([o.recorded for _, o in done], start, BUCKET_S)
    return series


def _costs(before: Snapshot, after: Snapshot, successful: int, span: float) -> dict[str, Any]:
    counts = {svc: diff_counts(before.counts.get(svc, {}), c) for svc, c in after.counts.items()}
    per_order: dict[str, dict[str, float]] = {}
    totals = dict.fromkeys((*KINDS, "mongo_us"), 0.0)
    for service, delta in counts.items():
        per_order[service] = {k: per_item(delta.get(k, 0), successful) for k in KINDS}
        # Time this service spent waiting on MongoDB round trips, per order.
        per_order[service]["mongo_ms"] = per_item(delta.get("mongo_us", 0) / 1000, successful)
        for kind in totals:
            totals[kind] += delta.get(kind, 0)
    per_order["total"] = {k: per_item(totals[k], successful) for k in KINDS}
    per_order["total"]["mongo_ms"] = per_item(totals["mongo_us"] / 1000, successful)
    cpu = {p: after.cpu[p] - before.cpu[p] for p in after.cpu if p in before.cpu}
    if MACHINE in cpu:
        cpu["services(sum)"] = sum(cpu.get(s, 0.0) for s in counts)
        measured = sum(v for p, v in cpu.items() if p not in (MACHINE, "services(sum)"))
        cpu["other processes"] = cpu[MACHINE] - measured
    window = after.at - before.at
    server = server_commands(diff_counts(before.server, after.server), successful)
    return {
        "server_commands": server,
        "machine_busy_cpus": cpu.get(MACHINE, float("nan")) / window
        if window > 0
        else float("nan"),
        "window_s": window,
        "counts": counts,
        "cost_per_order": per_order,
        "broker_publishes_per_s": rate(totals["amqp"], span),
        "cpu_s": cpu,
        "cpu_ms_per_order": {p: 1000 * per_item(s, successful) for p, s in cpu.items()},
    }


def server_commands(delta: Mapping[str, float], successful: int) -> dict[str, dict[str, float]]:
    """The MongoDB server's own account of a phase (bench.secantus_accounted), per successful
    order and `<command>.<collection>`: its calls and the CPU ms its threads spent inside
    them, the costliest first."""
    rows = {}
    for key, micros in delta.items():
        kind, _, command = key.partition(".")
        if kind == "server_us":
            calls = delta.get(f"server_calls.{command}", 0)
            rows[command] = {
                "calls": per_item(calls, successful),
                "ms": per_item(micros / 1000, successful),
            }
    return dict(sorted(rows.items(), key=lambda row: -row[1]["ms"]))


def top_commands(
    counts: dict[str, dict[str, float]], successful: int, limit: int = 14
) -> list[str]:
    """The most frequent MongoDB commands / Redis calls / publishes per order, by service,
    with the mean round trip of each MongoDB command."""
    rows = []
    for service, delta in counts.items():
        for key, value in delta.items():
            kind, _, rest = key.partition(".")
            if not rest or kind not in KINDS:
                continue
            line = f"{per_item(value, successful):6.2f}  {service:<12} {key}"
            if kind in ("mongo", "psp"):
                line += f"  (mean {delta.get(f'mongo_us.{rest}', 0) / value / 1000:.1f} ms)"
            rows.append((value, line))
    rows.sort(reverse=True)
    return [line for _, line in rows[:limit]]
