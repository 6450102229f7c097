"""Printing: figures with the targets beside them. Targets are goals, never assertions."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.analysis import top_commands


@dataclass(frozen=True)
class Target:
    name: str
    measured: float
    goal: float
    at_most: bool  # True: lower is better ("≤ goal"); False: "≥ goal"
    unit: str = ""

    @property
    def met(self) -> bool | None:
        if math.isnan(self.measured):
            return None
        return self.measured <= self.goal if self.at_most else self.measured >= self.goal

    def line(self) -> str:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[self.met]
        sign = "≤" if self.at_most else "≥"
        return (
            f"  {self.name:<48} {fmt(self.measured):>10}{self.unit:<4} target {sign} "
            f"{fmt(self.goal)}{self.unit:<4} {verdict}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": self.measured,
            "goal": self.goal,
            "at_most": self.at_most,
            "met": self.met,
        }


# What a run measured: the module its processes ran, or services it was pointed at.
PIPELINE_NAMES = {
    "bench.instrumented": "the four services, counted (bench.instrumented)",
    "bench.naive": "the same flow, written the plain way (bench.naive: no outbox, retries, DLQ)",
    "reused": "services the bench was pointed at (--reuse)",
}
# Ours, counted; also what every run from before the label was recorded measured.
SERVICES_PIPELINE = "bench.instrumented"


def fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _latency(name: str, summary: dict[str, float]) -> str:
    parts = " ".join(f"{k}={fmt(summary[k])}" for k in ("p50", "p95", "p99", "max"))
    return f"  {name:<34} {parts} ms (n={summary['count']:.0f})"


def _served(served: dict[str, Any]) -> str:
    lower, upper = served["p99_between_ms"]
    shares = ", ".join(
        f"{fmt(bound)} ms {100 * share:.1f}%"
        for bound, share in served["within_ms"].items()
        if 5 <= bound <= 50
    )
    return (
        f"  {'  in the order service (histogram)':<34} p99 in ({fmt(lower)}, {fmt(upper)}] ms;"
        f" within {shares} (n={served['count']:.0f})"
    )


def _server_commands(
    commands: dict[str, dict[str, float]], process_ms: float, top: int = 10
) -> str:
    inside = sum(row["ms"] for row in commands.values())
    lines = [
        f"  SecantusDB's CPU per successful order by command, its threads' clocks inside each "
        f"({fmt(inside)} of the process's {fmt(process_ms)} ms; the rest is wire and background):"
    ]
    for command, row in list(commands.items())[:top]:
        per_call = row["ms"] / row["calls"] if row["calls"] else math.nan
        lines.append(
            f"    {fmt(row['ms']):>6} ms  {fmt(row['calls']):>6} calls  "
            f"({fmt(per_call)} ms each)  {command}"
        )
    return "\n".join(lines)


def print_phase(name: str, phase: dict[str, Any], out: Callable[[str], None] = print) -> None:
    out(f"\n== {name} ==")
    out(
        f"  sent {phase['sent']}, accepted {phase['accepted']}, errors {phase['errors'] or 0}, "
        f"completed {phase['completed']} {phase['statuses']}, "
        f"not completed in time {phase['not_completed']}"
    )
    out(
        f"  sustained orders/s to a terminal state    {fmt(phase['orders_per_s'])} "
        f"(over {fmt(phase['span_s'])} s, first send -> last notification)"
    )
    out(f"  accepted orders/s (HTTP 202)              {fmt(phase['accepted_per_s'])}")
    out(_latency("POST /orders accept latency", phase["accept_latency_ms"]))
    out(_latency("client send lag (sent - due)", phase["send_lag_ms"]))
    if "server_latency" in phase:
        out(_served(phase["server_latency"]))
    out(_latency("end to end (accept -> recorded)", phase["e2e_latency_ms"]))
    out(_latency("end to end (accept -> sent)", phase["e2e_to_sent_ms"]))
    if "cost_per_order" not in phase:
        out("  (round trips and CPU not counted: services not started by the bench)")
        return
    out(f"  broker publishes/s (counted)              {fmt(phase['broker_publishes_per_s'])}")
    out(
        f"  machine busy {fmt(phase['machine_busy_cpus'])} CPUs on average over the "
        f"{fmt(phase['window_s'])} s window; CPU s: "
        + ", ".join(f"{p} {fmt(s)}" for p, s in phase["cpu_s"].items())
    )
    out(
        "  per successful order        MongoDB  PSP ledger  broker   Redis   CPU ms"
        "  MongoDB wait ms"
    )
    cpu = phase["cpu_ms_per_order"]
    cpu = {**cpu, "total": cpu.get("services(sum)", math.nan)}
    for service, cost in phase["cost_per_order"].items():
        out(
            f"    {service:<24} {fmt(cost['mongo']):>8} {fmt(cost.get('psp', 0.0)):>11} "
            f"{fmt(cost['amqp']):>7} {fmt(cost['redis']):>7} "
            f"{fmt(cpu.get(service, math.nan)):>8} {fmt(cost['mongo_ms']):>10}"
        )
    others = {
        p: ms for p, ms in cpu.items() if p not in phase["cost_per_order"] and p != "services(sum)"
    }
    for process, ms in others.items():
        out(f"    {process:<24} {'':>8} {'':>11} {'':>7} {'':>7} {fmt(ms):>8}")
    out(_server_commands(phase.get("server_commands", {}), cpu.get("secantusdb", math.nan)))
    successful = phase["statuses"].get("CONFIRMED", 0)
    out("  most frequent calls per successful order:")
    for line in top_commands(phase["counts"], successful):
        out(f"    {line}")


def e2e_targets(results: dict[str, Any]) -> list[Target]:
    closed = results["phases"]["closed"]
    open_ = results["phases"].get("open", {})
    total = closed.get("cost_per_order", {}).get("total", {})
    cpu = closed.get("cpu_ms_per_order", {})
    nan = math.nan
    baseline = results.get("baseline", {}).get("closed_orders_per_s", nan)
    if results.get("baseline_pipeline") == "bench.naive":
        baseline = nan  # the 3x is against our own earlier code, not the plain pipeline
    return [
        Target("MongoDB round trips per order (four services)", total.get("mongo", nan), 8, True),
        Target("CPU of the four services per order", cpu.get("services(sum)", nan), 10, True, "ms"),
        Target("CPU of the MongoDB server per order", cpu.get("secantusdb", nan), 15, True, "ms"),
        Target(
            "closed-loop orders/s ÷ the --baseline run",
            closed.get("orders_per_s", nan) / baseline,
            3,
            False,
            "x",
        ),
        Target("broker publishes per successful order", total.get("amqp", nan), 6, True),
        Target("Redis round trips per successful order", total.get("redis", nan), 4, True),
        Target(
            "share of the DB-bound ceiling (closed loop)",
            100 * results.get("ceiling_share", nan),
            80,
            False,
            "%",
        ),
        Target(
            "POST /orders p99 at half max rate (open loop)",
            open_.get("accept_latency_ms", {}).get("p99", nan),
            25,
            True,
            "ms",
        ),
    ]


def print_e2e(results: dict[str, Any], out: Callable[[str], None] = print) -> None:
    config = results["config"]
    out(f"\n#### bench e2e  ({config['command']})")
    out(f"  machine: {results['machine']}")
    out(f"  pipeline: {PIPELINE_NAMES[results.get('pipeline', SERVICES_PIPELINE)]}")
    for name, phase in results["phases"].items():
        label = (
            f"closed loop, {config['clients']} clients"
            if name == "closed"
            else f"open loop, {fmt(results['open_rate'])} orders/s for {config['duration']:.0f} s"
        )
        print_phase(label, phase, out)
    out("\n== DB-bound ceiling ==")
    out(
        f"  MongoDB calibration: {fmt(results['mongo_ops_per_s'])} simple ops/s "
        f"(insert/find/update by _id, {config['calibration_concurrency']} callers)"
    )
    out(
        f"  ceiling = {fmt(results['mongo_ops_per_s'])} / {fmt(results['mongo_per_order'])} "
        f"MongoDB ops per order = {fmt(results['ceiling'])} orders/s; achieved "
        f"{fmt(results['phases']['closed']['orders_per_s'])} = "
        f"{fmt(100 * results['ceiling_share'])} %"
    )
    out(
        f"  calibration again after the run: {fmt(results.get('mongo_ops_per_s_after', math.nan))}"
        f" ops/s -> ceiling {fmt(results.get('ceiling_after', math.nan))} orders/s"
    )
    per_op = results.get("db_ms_per_op", {})
    out(
        f"  SecantusDB CPU per MongoDB op: {fmt(per_op.get('calibration', math.nan))} ms in the "
        f"calibration ({fmt(per_op.get('calibration after the run', math.nan))} ms after the "
        f"run), {fmt(per_op.get('closed loop', math.nan))} ms in the closed loop, where it was "
        f"busy {fmt(100 * results.get('db_busy_closed', math.nan))} % of one CPU"
    )
    if results.get("vhost_stats"):
        stats = results["vhost_stats"]
        out(
            f"  broker's own vhost totals (whole run): publish={stats.get('publish')} "
            f"deliver_get={stats.get('deliver_get')} ack={stats.get('ack')}"
        )
    if results.get("consumers"):
        out(f"  consumers as the broker lists them, by kind: {results['consumers']}")
    if "baseline" in results:
        print_baseline(results, out)
    out("\n== targets (goals, not assertions) ==")
    for target in e2e_targets(results):
        out(target.line())
    for label, lines in results.get("profiles", {}).items():
        out(f"\n== profile: {label} (py-spy, top functions by own CPU samples) ==")
        for line in lines:
            out(f"  {line}")


def baseline_figures(results: dict[str, Any]) -> dict[str, float]:
    """The figures a before/after comparison quotes, from one run's results."""
    closed = results["phases"]["closed"]
    total = closed.get("cost_per_order", {}).get("total", {})
    cpu = closed.get("cpu_ms_per_order", {})
    open_latency = results["phases"].get("open", {}).get("accept_latency_ms", {})
    return {
        "closed_orders_per_s": closed.get("orders_per_s", math.nan),
        "mongo_per_order": total.get("mongo", math.nan),
        # Runs from before the PSP ledger was counted apart counted it as MongoDB.
        "psp_per_order": total.get("psp", math.nan),
        "services_cpu_ms": cpu.get("services(sum)", math.nan),
        "db_cpu_ms": cpu.get("secantusdb", math.nan),
        "open_p99_ms": open_latency.get("p99", math.nan),
    }


def print_baseline(results: dict[str, Any], out: Callable[[str], None] = print) -> None:
    before, after = results["baseline"], baseline_figures(results)
    pipeline = PIPELINE_NAMES[results.get("baseline_pipeline", SERVICES_PIPELINE)]
    out(f"\n== this run against --baseline {results['baseline_path']} ({pipeline}) ==")
    out(f"  {'figure':<40} {'baseline':>10} {'this run':>10} {'ratio':>7}")
    for key, label in (
        ("closed_orders_per_s", "closed-loop orders/s"),
        ("mongo_per_order", "MongoDB round trips per order"),
        ("psp_per_order", "PSP ledger round trips per order"),
        ("services_cpu_ms", "CPU ms per order, four services"),
        ("db_cpu_ms", "CPU ms per order, MongoDB server"),
        ("open_p99_ms", "POST /orders p99 ms, open loop"),
    ):
        was, now = before.get(key, math.nan), after[key]
        out(f"  {label:<40} {fmt(was):>10} {fmt(now):>10} {fmt(now / was if was else math.nan):>7}")
