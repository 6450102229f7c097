"""PNG of an e2e run: latency percentiles and throughput over time, one row per phase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede pyplot
import matplotlib.pyplot as plt


def plot_e2e(results: dict[str, Any], path: Path) -> Path:
    phases = results["phases"]
    figure, axes = plt.subplots(len(phases), 2, figsize=(13, 4.2 * len(phases)), squeeze=False)
    for row, (name, phase) in enumerate(phases.items()):
        series = phase["series"]
        latency, throughput = axes[row]
        for key, style in (
            ("accept_p50", "-"),
            ("accept_p95", "--"),
            ("accept_p99", ":"),
            ("e2e_p50", "-"),
            ("e2e_p99", ":"),
        ):
            points = series.get(key, [])
            if points:
                xs, ys = zip(*points, strict=True)
                latency.plot(xs, ys, style, label=key.replace("_", " "))
        latency.set_yscale("log")
        latency.set_title(f"{name}: latency per 1 s bucket")
        latency.set_xlabel("s since first send")
        latency.set_ylabel("ms")
        latency.legend(fontsize=8)
        for key in ("accepted_per_s", "completed_per_s"):
            points = series.get(key, [])
            if points:
                xs, ys = zip(*points, strict=True)
                throughput.step(xs, ys, where="post", label=key.replace("_", " "))
        throughput.set_title(f"{name}: throughput")
        throughput.set_xlabel("s since first send")
        throughput.set_ylabel("orders/s")
        throughput.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
