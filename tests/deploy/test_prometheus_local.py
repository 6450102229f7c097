"""The local rewrite of the Prometheus files (infra/devstack/prometheus.py) changes only what
differs on one machine: targets, intervals, the rule file path, and the `for:` it is asked to.
Every expression, label and annotation stays the project's, so the ops tests and
`infra/bin/up --prometheus` run the alerts that production runs."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest

from infra.devstack import DevstackError
from infra.devstack.prometheus import local_config, local_rules, write_local_files
from tests.deploy.manifests import PROMETHEUS, SERVICES, load_yaml, promtool

pytestmark = pytest.mark.deploy

TARGETS = {service: f"127.0.0.1:{9100 + i}" for i, service in enumerate(SERVICES)}


def test_rules_keep_everything_but_the_requested_for() -> None:
    original = load_yaml(PROMETHEUS / "alerts.yml")
    rewritten = local_rules({"OutboxLagHigh": "2s"})
    expected = copy.deepcopy(original)
    for group in expected["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "OutboxLagHigh":
                rule["for"] = "2s"
    assert rewritten == expected
    assert local_rules() == original


def test_an_unknown_alert_name_is_refused() -> None:
    with pytest.raises(DevstackError, match="NoSuchAlert"):
        local_rules({"NoSuchAlert": "1s"})


def test_config_changes_only_targets_intervals_and_the_rule_path(tmp_path: Path) -> None:
    original = load_yaml(PROMETHEUS / "prometheus.yml")
    rules = tmp_path / "alerts.yml"
    rewritten = local_config(TARGETS, rules, interval="1s")
    assert rewritten["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s"}
    assert rewritten["rule_files"] == [str(rules)]
    jobs = {job["job_name"]: job for job in rewritten["scrape_configs"]}
    assert set(jobs) == {job["job_name"] for job in original["scrape_configs"]}
    services = jobs["order-pipeline"]["static_configs"]
    assert {s["labels"]["service"]: s["targets"] for s in services} == {
        service: [target] for service, target in TARGETS.items()
    }
    rabbitmq = jobs["rabbitmq"]
    assert rabbitmq["static_configs"][0]["targets"] == ["127.0.0.1:15692"]
    assert rabbitmq["metrics_path"] == "/metrics/per-object"  # per-queue series, no conf change
    for job in original["scrape_configs"]:  # labels as the dashboard and alerts expect them
        assert [s["labels"] for s in jobs[job["job_name"]]["static_configs"]] == [
            s["labels"] for s in job["static_configs"]
        ]


def test_a_service_without_a_local_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DevstackError, match="payment"):
        local_config({k: v for k, v in TARGETS.items() if k != "payment"}, tmp_path / "a.yml")


def test_promtool_accepts_the_written_files(tmp_path: Path) -> None:
    tool = promtool()
    assert tool is not None, "promtool missing: infra/bin/test installs it (Debian prometheus)"
    config = write_local_files(tmp_path, TARGETS, "1s", {"QueueWithoutConsumer": "2s"})
    checked = subprocess.run(
        [tool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    count = sum(len(g["rules"]) for g in load_yaml(PROMETHEUS / "alerts.yml")["groups"])
    assert f"SUCCESS: {count} rules found" in checked.stdout + checked.stderr
