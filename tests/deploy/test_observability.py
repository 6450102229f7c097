"""Prometheus configuration and alert rules, Grafana provisioning and dashboard: consistent
with compose, valid for promtool (when installed), and using metrics that exist."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.deploy.manifests import (
    COMPOSE_FILE,
    DASHBOARD_FILE,
    GRAFANA,
    PROMETHEUS,
    PROMETHEUS_GENERATED,
    SERVICES,
    alert_expressions,
    alert_rules,
    compose_services,
    dashboard_expressions,
    dashboard_panels,
    default_http_port,
    is_rabbitmq_metric,
    load_json,
    load_yaml,
    promql_metric_names,
    promtool,
)

pytestmark = pytest.mark.deploy

needs_promtool = pytest.mark.skipif(promtool() is None, reason="promtool is not installed")


# --- the PromQL metric-name extractor the cross-checks rely on ----------------------------


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        (
            "histogram_quantile(0.99, sum by (le, route) "
            "(rate(http_request_duration_seconds_bucket[5m])))",
            {"http_request_duration_seconds_bucket"},
        ),
        (
            'sum by (vhost, queue) (rabbitmq_queue_messages_ready{queue=~".*\\\\.dlq"}) > 0',
            {"rabbitmq_queue_messages_ready"},
        ),
        (
            'sum(rate(a_total{status=~"5..", x="by (y)"}[$__rate_interval])) by (service)'
            " / on(service) group_left(team) sum without (instance) (b_total offset 5m) > bool 1e3",
            {"a_total", "b_total"},
        ),
        (
            "max by (service) (outbox_oldest_event_age_seconds) > 60",
            {"outbox_oldest_event_age_seconds"},
        ),
        (
            "up == 0 and on() vector(1) unless absent(c) or d:recorded:rate5m",
            {"up", "c", "d:recorded:rate5m"},
        ),
        ("rate(x[5m:1m]) * -Inf + NaN", {"x"}),
    ],
)
def test_promql_metric_names(expression: str, names: set[str]) -> None:
    assert promql_metric_names(expression) == names


# --- Prometheus --------------------------------------------------------------------------

CONFIG = load_yaml(PROMETHEUS / "prometheus.yml")
JOBS = {job["job_name"]: job for job in CONFIG["scrape_configs"]}


def _targets(job: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        target: group.get("labels", {})
        for group in job["static_configs"]
        for target in group["targets"]
    }


def test_prometheus_scrapes_the_four_services_by_compose_name_and_port() -> None:
    targets = _targets(JOBS["order-pipeline"])
    assert set(targets) == {f"{s}:{default_http_port(s)}" for s in SERVICES}
    compose = compose_services()
    for target, labels in targets.items():
        host, port = target.split(":")
        assert f"127.0.0.1:{port}:{port}" in compose[host]["ports"]
        assert labels["service"] == host
    assert JOBS["order-pipeline"].get("metrics_path", "/metrics") == "/metrics"


def test_prometheus_scrapes_rabbitmq_plugin_and_loads_the_rules() -> None:
    assert set(_targets(JOBS["rabbitmq"])) == {"rabbitmq:15692"}
    assert "rabbitmq" in compose_services()
    for rule_file in CONFIG["rule_files"]:
        assert (PROMETHEUS / rule_file).is_file()


def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
    used = set().union(*(promql_metric_names(e) for e in alert_expressions()))
    assert {
        "rabbitmq_queue_messages_ready", "rabbitmq_queue_consumers",
        "outbox_oldest_event_age_seconds", "http_requests_total", "messages_consumed_total",
        "http_request_duration_seconds_bucket", "orders_deadline_expired_total",
    } <= used  # fmt: skip


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = promtool()
    assert tool is not None
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_check_config() -> None:
    result = _promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    result = _promtool("test", "rules", str(PROMETHEUS / "alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana -----------------------------------------------------------------------------

DATASOURCES = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
PROVIDERS = load_yaml(GRAFANA / "provisioning" / "dashboards" / "order-pipeline.yml")
DASHBOARD = load_json(DASHBOARD_FILE)


def test_datasource_points_at_the_compose_prometheus() -> None:
    (datasource,) = DATASOURCES["datasources"]
    assert datasource["type"] == "prometheus"
    url = urlsplit(datasource["url"])
    assert (url.hostname, url.port) == ("prometheus", 9090)
    assert "127.0.0.1:9090:9090" in compose_services()["prometheus"]["ports"]


def test_dashboard_provider_reads_the_mounted_dashboards() -> None:
    (provider,) = PROVIDERS["providers"]
    mounts = {}
    for volume in compose_services()["grafana"]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[(COMPOSE_FILE.parent / source).resolve()] = target
    assert mounts[DASHBOARD_FILE.parent.resolve()] == provider["options"]["path"]


def test_dashboard_panels_query_the_provisioned_datasource() -> None:
    (datasource,) = DATASOURCES["datasources"]
    assert DASHBOARD["uid"]
    assert DASHBOARD["title"]
    panels = list(dashboard_panels(DASHBOARD))
    assert len({p["id"] for p in panels}) == len(panels)
    queries = [p for p in panels if p["type"] != "row"]
    assert len(queries) >= 10
    for panel in queries:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["expr"].strip()
            assert target.get("datasource", datasource)["uid"] == datasource["uid"]


def test_dashboard_covers_the_pipeline_metrics() -> None:
    used = set().union(*(promql_metric_names(e) for e in dashboard_expressions()))
    assert {
        "messages_published_total", "messages_consumed_total", "messages_publish_failures_total",
        "message_handler_duration_seconds_bucket", "consumer_in_flight_messages",
        "outbox_backlog_events", "outbox_oldest_event_age_seconds", "http_requests_total",
        "http_request_duration_seconds_bucket", "stock_cache_requests_total",
        "rabbitmq_queue_messages_ready", "orders_deadline_expired_total",
        "payments_refunded_total",
    } <= used  # fmt: skip


def test_rabbitmq_panels_are_marked_external() -> None:
    for panel in dashboard_panels(DASHBOARD):
        names = set().union(*(promql_metric_names(t["expr"]) for t in panel.get("targets", [])))
        if any(is_rabbitmq_metric(n) for n in names):
            assert "RabbitMQ" in panel["title"]
            assert "External" in panel["description"]


def _registered_sample_names() -> set[str]:
    # Importing the modules registers their metrics in the default registry.
    import infra.observability.metrics  # noqa: F401
    import inventory_service.adapters.cache  # noqa: F401

    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names |= {f"{family.name}{s}" for s in ("_total", "_bucket", "_sum", "_count")}
    return names


def test_queries_use_metrics_the_code_defines() -> None:
    """Fast, static version of the live cross-check in test_live_scrape.py."""
    registered = _registered_sample_names()
    for expression in [*dashboard_expressions(), *alert_expressions()]:
        for name in promql_metric_names(expression):
            if not is_rabbitmq_metric(name) and name not in PROMETHEUS_GENERATED:
                assert name in registered, f"{name} (in {expression!r}) is not defined"
