"""infra/compose.yaml: services, health checks, dependencies and settings, checked against the
code (settings classes, default ports) and against the RabbitMQ definitions."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from infra.messaging import codec
from infra.messaging.failover import parse_amqp_urls
from infra.settings import SettingsRefused
from tests.deploy.manifests import (
    COMPOSE_FILE,
    DEFINITIONS_FILE,
    DOCKERFILE,
    INFRA,
    SERVICES,
    VHOST,
    compose,
    compose_services,
    default_http_port,
    definitions,
    module_of,
    service_environment,
    settings_env_vars,
    settings_for,
    with_real_secrets,
)

pytestmark = pytest.mark.deploy
RABBITMQ_NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")
RABBITMQ_CONF = INFRA / "deploy" / "rabbitmq" / "rabbitmq.conf"

SERVICES_BY_NAME = compose_services()


def _built_from_our_dockerfile(service: dict[str, Any]) -> bool:
    build = service.get("build")
    if not isinstance(build, dict):
        return False
    context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
    dockerfile: Path = (context / build.get("dockerfile", "Dockerfile")).resolve()
    return dockerfile == DOCKERFILE


BUILT = {name: s for name, s in SERVICES_BY_NAME.items() if _built_from_our_dockerfile(s)}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return service_environment(service)


def test_the_four_services_are_built_from_the_dockerfile() -> None:
    assert set(BUILT) == set(SERVICES)
    images = {s.get("image") for s in BUILT.values()}
    assert len(images) == 1, f"one image for all services, got {images}"


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_its_module_with_settings_it_reads(name: str) -> None:
    service = BUILT[name]
    assert service["command"] == ["python", "-m", module_of(name)]
    environment = _environment(service)
    unknown = set(environment) - settings_env_vars(name)
    assert not unknown, f"{name} sets variables no settings class reads: {sorted(unknown)}"
    port = default_http_port(name)
    assert environment["HTTP_PORT"] == str(port)
    assert environment["HTTP_HOST"] == "0.0.0.0"
    assert environment["ENVIRONMENT"] == "production"
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert urlsplit(environment["MONGO_URL"]).hostname in SERVICES_BY_NAME
    assert urlsplit(environment["REDIS_URL"]).hostname in SERVICES_BY_NAME


@pytest.mark.parametrize("name", SERVICES)
def test_production_refuses_the_compose_placeholders(name: str) -> None:
    """As checked in, the compose environment does not start in production: its passwords
    are placeholders and its MongoDB has no user."""
    with pytest.raises(SettingsRefused) as refused:
        settings_for(name, _environment(BUILT[name]))
    message = str(refused.value)
    assert "AMQP_URL password is a placeholder" in message
    assert "REDIS_URL password is a placeholder" in message
    assert "MONGO_URL has no credentials" in message


@pytest.mark.parametrize("name", SERVICES)
def test_service_accepts_its_compose_environment_with_real_secrets_in_production(
    name: str,
) -> None:
    """The service's own settings validation passes on the environment compose gives it once
    the placeholders are replaced and MONGO_URL names a user, as its header comment says."""
    password = secrets.token_hex(32)
    environment = with_real_secrets(_environment(BUILT[name]))
    environment["MONGO_URL"] = f"mongodb://pipeline:{password}@mongo:27017/?authSource=admin"
    settings = settings_for(name, environment)
    assert settings.environment == "production"
    assert settings.http.port == int(environment["HTTP_PORT"])
    assert settings.amqp.url == environment["AMQP_URL"]


@pytest.mark.parametrize("name", SERVICES)
def test_service_health_check_probes_its_own_port(name: str) -> None:
    test = BUILT[name]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"], "the slim image has no curl"
    port = _environment(BUILT[name])["HTTP_PORT"]
    assert re.search(rf"http://127\.0\.0\.1:{port}/(ready|health)\b", test[-1]), test


@pytest.mark.parametrize("name", SERVICES)
def test_service_amqp_url_names_every_node_as_its_own_user_on_the_orders_vhost(name: str) -> None:
    urls = [urlsplit(u) for u in parse_amqp_urls(_environment(BUILT[name])["AMQP_URL"])]
    assert [u.hostname for u in urls] == list(RABBITMQ_NODES)
    users = {u["name"]: u for u in definitions()["users"]}
    for url in urls:
        assert url.scheme == "amqp"
        assert url.port == 5672
        assert unquote(url.path.lstrip("/")) == VHOST
        assert url.username == name
        assert url.password == users[name]["password"], f"{name}: password differs"


def test_rabbitmq_is_a_three_node_cluster_with_the_same_files_on_every_node() -> None:
    peers = _conf(INFRA / "deploy" / "rabbitmq" / "cluster.conf")
    assert peers["cluster_formation.peer_discovery_backend"] == "classic_config"
    listed = {v for k, v in peers.items() if k.startswith("cluster_formation.classic_config.")}
    assert listed == {f"rabbit@{n}" for n in RABBITMQ_NODES}
    assert _conf(RABBITMQ_CONF)["cluster_partition_handling"] == "pause_minority"
    cookies = set()
    for node in RABBITMQ_NODES:
        service = SERVICES_BY_NAME[node]
        assert service["hostname"] == node  # the node name rabbit@<hostname> is a peer above
        mounts = _bind_mounts(service)
        # Definitions and settings loaded on every node, whichever boots first.
        for source in (RABBITMQ_CONF, DEFINITIONS_FILE, INFRA / "deploy/rabbitmq/cluster.conf"):
            assert str(source) in mounts, f"{node} lacks {source.name}"
        advanced = INFRA / "deploy/rabbitmq/advanced.config"
        assert mounts.get(str(advanced)) == "/etc/rabbitmq/advanced.config", node
        cookies.add(_environment(service)["RABBITMQ_ERLANG_COOKIE"])
    assert len(cookies) == 1  # one cluster, one cookie
    for node in RABBITMQ_NODES[1:]:  # joins node 1, started once it is up
        assert SERVICES_BY_NAME[node]["depends_on"] == {
            RABBITMQ_NODES[0]: {"condition": "service_healthy"}
        }
    for name in SERVICES:
        assert set(RABBITMQ_NODES) <= set(BUILT[name]["depends_on"])


def test_every_service_has_a_health_check() -> None:
    for name, service in SERVICES_BY_NAME.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_depends_on_references_exist_and_wait_for_health() -> None:
    for name, service in SERVICES_BY_NAME.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on should carry conditions"
        for dependency, condition in depends_on.items():
            assert dependency in SERVICES_BY_NAME, f"{name} depends on unknown {dependency}"
            assert condition == {"condition": "service_healthy"}
            assert "healthcheck" in SERVICES_BY_NAME[dependency]
    for name in SERVICES:
        assert {"mongo", "rabbitmq", "redis"} <= set(BUILT[name]["depends_on"])


def test_mongo_still_works_alone_for_infra_bin_up() -> None:
    mongo = SERVICES_BY_NAME["mongo"]
    assert "depends_on" not in mongo, "`up --wait mongo` must start MongoDB only"
    assert mongo["ports"] == ["127.0.0.1:27017:27017"]
    command = mongo["command"]
    assert command[command.index("--replSet") + 1] == "rs0"
    assert "transactionLifetimeLimitSeconds=10" in command
    assert "rs.initiate" in mongo["healthcheck"]["test"][-1]


def test_published_ports_bind_loopback_only() -> None:
    for name, service in SERVICES_BY_NAME.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


def _bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Host path (resolved) -> container path, for volumes that are host paths."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            mounts[str((COMPOSE_FILE.parent / source).resolve())] = target
    return mounts


def test_bind_mounts_exist_and_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes") or {})
    for name, service in SERVICES_BY_NAME.items():
        for host_path in _bind_mounts(service):
            assert Path(host_path).exists(), f"{name} mounts missing {host_path}"
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_rabbitmq_loads_our_definitions_and_exports_per_queue_metrics() -> None:
    rabbitmq = SERVICES_BY_NAME["rabbitmq"]
    assert str(rabbitmq["image"]).startswith("rabbitmq:3.")
    assert "management" in rabbitmq["image"]
    mounts = _bind_mounts(rabbitmq)
    definitions_target = mounts[str(DEFINITIONS_FILE)]
    conf_target = mounts[str(INFRA / "deploy" / "rabbitmq" / "rabbitmq.conf")]
    assert re.fullmatch(r"/etc/rabbitmq/conf\.d/[\w.-]+\.conf", conf_target), conf_target
    assert mounts[str(INFRA / "deploy" / "rabbitmq" / "enabled_plugins")] == (
        "/etc/rabbitmq/enabled_plugins"
    )
    conf = _conf(RABBITMQ_CONF)
    assert conf["management.load_definitions"] == definitions_target
    assert conf["prometheus.return_per_object_metrics"] == "true"
    # The broker refuses what every consumer would dead-letter as too big, nothing less.
    assert int(conf["max_message_size"]) == codec.MAX_BODY_BYTES


def _conf(path: Path) -> dict[str, str]:
    conf = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            conf[key.strip()] = value.strip()
    return conf


def test_grafana_and_prometheus_mount_their_provisioning() -> None:
    prometheus = _bind_mounts(SERVICES_BY_NAME["prometheus"])
    assert prometheus[str(INFRA / "deploy" / "prometheus")] == "/etc/prometheus"
    assert (
        "--config.file=/etc/prometheus/prometheus.yml" in SERVICES_BY_NAME["prometheus"]["command"]
    )
    grafana = _bind_mounts(SERVICES_BY_NAME["grafana"])
    assert (
        grafana[str(INFRA / "deploy" / "grafana" / "provisioning")] == "/etc/grafana/provisioning"
    )


# Skips where there is no Compose v2 plugin. Debian bookworm packages none; its
# `docker-compose` 1.29 (v1) is no substitute: it rejects the Compose Spec's top-level `name`.
@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="no `docker compose` plugin here",
)
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
