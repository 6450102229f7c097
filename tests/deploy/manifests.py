"""Loading and reading the deployment files, for the tests next to this module.

Facts about the code (which environment variables the settings read, the default HTTP ports,
the queues each service consumes) are derived from the code itself, never restated here.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from contracts.topology import (
    PUBLICATIONS,
    SUBSCRIPTIONS,
    dead_letter_queue_name,
    exchange_name,
    queue_name,
    retry_tier_names,
)
from infra import settings as infra_settings
from infra.settings import RuntimeSettings

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
DEPLOY = INFRA / "deploy"
COMPOSE_FILE = INFRA / "compose.yaml"
DOCKERFILE = INFRA / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
K8S = DEPLOY / "k8s"
RABBITMQ = DEPLOY / "rabbitmq"
DEFINITIONS_FILE = RABBITMQ / "definitions.json"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARD_FILE = GRAFANA / "dashboards" / "order-pipeline.json"

SERVICES: tuple[str, ...] = tuple(SUBSCRIPTIONS)
VHOST = "orders"

Yaml = dict[str, Any]


def module_of(service: str) -> str:
    """`order` -> `order_service`, the package `python -m` runs."""
    return f"{service}_service"


# --- files --------------------------------------------------------------------------------


def load_yaml(path: Path) -> Yaml:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a YAML mapping"
    return data


def load_yaml_documents(path: Path) -> list[Yaml]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for document in documents:
        assert isinstance(document, dict), f"{path}: a document is not a mapping"
    return documents


def load_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict), f"{path}: not a JSON object"
    return data


def deployment_files(suffixes: tuple[str, ...]) -> list[Path]:
    """Every deployment file with one of `suffixes` (infra/compose.yaml included)."""
    found = [p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in suffixes]
    if COMPOSE_FILE.suffix in suffixes:
        found.append(COMPOSE_FILE)
    return sorted(found)


def compose() -> Yaml:
    return load_yaml(COMPOSE_FILE)


def compose_services() -> dict[str, Yaml]:
    services = compose()["services"]
    assert isinstance(services, dict)
    return services


def _interpolated(value: str) -> str:
    """Compose's `${NAME:-default}` / `${NAME-default}` / `${NAME}`, with NAME unset."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def service_environment(service: Yaml) -> dict[str, str]:
    """A compose service's environment, interpolated as with no variable set."""
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {str(k): _interpolated(str(v)) for k, v in environment.items()}


PLACEHOLDER = re.compile(r"CHANGE-ME[\w-]*")


def with_real_secrets(environment: dict[str, str]) -> dict[str, str]:
    """`environment` as an operator deploys it: each CHANGE-ME placeholder replaced by a
    generated 32-byte secret (the same placeholder, the same secret)."""
    generated: dict[str, str] = {}

    def secret(match: re.Match[str]) -> str:
        return generated.setdefault(match.group(0), secrets.token_hex(32))

    return {name: PLACEHOLDER.sub(secret, value) for name, value in environment.items()}


def definitions() -> dict[str, Any]:
    return load_json(DEFINITIONS_FILE)


def k8s_objects() -> list[Yaml]:
    objects: list[Yaml] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            objects.extend(load_yaml_documents(path))
    return objects


def k8s_of_kind(kind: str) -> dict[str, Yaml]:
    return {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == kind}


def promtool() -> str | None:
    return shutil.which("promtool")


# --- the settings: which environment variables exist, default ports ------------------------


def _settings_classes(module: ModuleType) -> list[type[BaseSettings]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseSettings)
        and value.__module__ == module.__name__
    ]


def _env_names(settings: type[BaseSettings]) -> set[str]:
    config = settings.model_config
    prefix = config.get("env_prefix") or ""
    case_sensitive = bool(config.get("case_sensitive"))
    names: set[str] = set()
    for field_name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            candidates = [alias]
        elif isinstance(alias, AliasChoices):
            candidates = [c for c in alias.choices if isinstance(c, str)]
        else:
            candidates = [f"{prefix}{field_name}"]
        names.update(c if case_sensitive else c.upper() for c in candidates)
    return names


def _service_modules(service: str) -> list[ModuleType]:
    """infra/settings.py and every module of the service package its main.py loads."""
    package = module_of(service)
    importlib.import_module(f"{package}.main")
    loaded = [
        module
        for name, module in sorted(sys.modules.items())
        if (name == package or name.startswith(f"{package}.")) and not name.endswith("__main__")
    ]
    return [infra_settings, *loaded]


@cache
def settings_env_vars(service: str) -> frozenset[str]:
    """Environment variables the process of `service` reads: env_prefix + field name of every
    pydantic-settings class in infra/settings.py (shared runtime) and in the service's own
    modules (<service>_service/main.py and what it imports)."""
    return frozenset(
        name
        for module in _service_modules(service)
        for cls in _settings_classes(module)
        for name in _env_names(cls)
    )


def all_settings_env_vars() -> frozenset[str]:
    return frozenset().union(*(settings_env_vars(s) for s in SERVICES))


def settings_for(service: str, environment: dict[str, str]) -> RuntimeSettings:
    """The runtime settings the service builds from exactly `environment`, the way its
    `run()` does (`SERVICE.load_settings()`, no server started). Raises what the service raises
    for a refused configuration (e.g. a development default in production)."""
    module = importlib.import_module(f"{module_of(service)}.main")
    names = all_settings_env_vars()
    clean = {k: v for k, v in os.environ.items() if k.upper() not in names}
    with mock.patch.dict(os.environ, {**clean, **environment}, clear=True):
        runtime_settings, _ = module.SERVICE.load_settings()
    assert isinstance(runtime_settings, RuntimeSettings)
    return runtime_settings


@cache
def default_http_port(service: str) -> int:
    """The port the service listens on when HTTP_PORT is unset."""
    return settings_for(service, {"ENVIRONMENT": "development"}).http.port


# --- the broker topology of each service ---------------------------------------------------


def consumed_queues(service: str) -> list[str]:
    return [queue_name(service, e.event_type) for e in SUBSCRIPTIONS[service]]


def owned_queues(service: str, retry_delays_ms: list[int], jitter: float = 0.3) -> list[str]:
    """Work queues, their DLQs and the service's retry tiers (each an exchange and a queue of
    the same name)."""
    names: list[str] = []
    for queue in consumed_queues(service):
        names += [queue, dead_letter_queue_name(queue)]
    return names + retry_tier_names(service, retry_delays_ms, jitter)


def published_exchanges(service: str) -> set[str]:
    return {exchange_name(e.event_type) for e in PUBLICATIONS[service]}


def subscribed_exchanges(service: str) -> set[str]:
    return {exchange_name(e.event_type) for e in SUBSCRIPTIONS[service]}


def all_event_exchanges() -> set[str]:
    events = {e for table in (PUBLICATIONS, SUBSCRIPTIONS) for es in table.values() for e in es}
    return {exchange_name(e.event_type) for e in events}


# --- Dockerfile -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper-case
    arguments: str


def dockerfile_stages(text: str) -> tuple[dict[str, str], list[list[Instruction]]]:
    """(ARGs declared before the first FROM, the instructions of each stage from its FROM).

    Joins `\\` continuations and drops comment lines, as Docker does (also inside a
    continuation)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"

    global_args: dict[str, str] = {}
    stages: list[list[Instruction]] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([instruction])
        elif stages:
            stages[-1].append(instruction)
        elif instruction.keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            global_args[name] = default
    return global_args, stages


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD."""
    parsed = json.loads(arguments)
    assert isinstance(parsed, list), arguments
    assert all(isinstance(a, str) for a in parsed), arguments
    return parsed


# --- PromQL ---------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
# An identifier not preceded by a character that would make it part of a number, a duration
# or another name, and not followed by "(" (a function call).
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?!\s*\(|[\w:])")
_KEYWORDS = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
        "group_right", "bool", "offset", "inf", "nan",
    }
)  # fmt: skip


def promql_metric_names(expression: str) -> set[str]:
    """Metric names used in a PromQL expression.

    Strings, label matchers `{...}`, ranges `[...]` and grouping clauses `by (...)` are
    removed first (their identifiers are labels or durations), then what is left of the
    identifiers, minus function calls and keywords, are metric names."""
    text = _STRING.sub(" ", expression)
    for pattern in (_BRACES, _BRACKETS, _GROUPING):
        text = pattern.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_expressions() -> list[str]:
    return [
        str(target["expr"])
        for panel in dashboard_panels(load_json(DASHBOARD_FILE))
        for target in panel.get("targets", [])
    ]


def alert_rules() -> list[Yaml]:
    return [
        rule for group in load_yaml(PROMETHEUS / "alerts.yml")["groups"] for rule in group["rules"]
    ]


def alert_expressions() -> list[str]:
    return [str(rule["expr"]) for rule in alert_rules()]


def is_rabbitmq_metric(name: str) -> bool:
    """Exported by RabbitMQ's rabbitmq_prometheus plugin, not by our services."""
    return name.startswith("rabbitmq_")


# Series Prometheus generates for every scrape target; no process exports them.
PROMETHEUS_GENERATED = frozenset({"up"})
