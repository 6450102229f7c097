"""infra/deploy/k8s: Deployments, Services, PodDisruptionBudgets and KEDA ScaledObjects,
consistent with each other, with the settings and with contracts.topology."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from infra.messaging.failover import parse_amqp_urls
from infra.settings import SettingsRefused
from tests.deploy.manifests import (
    K8S,
    SERVICES,
    VHOST,
    consumed_queues,
    default_http_port,
    definitions,
    k8s_objects,
    k8s_of_kind,
    load_yaml,
    module_of,
    settings_env_vars,
    settings_for,
    with_real_secrets,
)

pytestmark = pytest.mark.deploy

DEPLOYMENTS = k8s_of_kind("Deployment")
SERVICE_OBJECTS = k8s_of_kind("Service")
PDBS = k8s_of_kind("PodDisruptionBudget")
SCALED_OBJECTS = k8s_of_kind("ScaledObject")
CONFIG_MAPS = k8s_of_kind("ConfigMap")
SECRETS = k8s_of_kind("Secret")
TRIGGER_AUTHENTICATIONS = k8s_of_kind("TriggerAuthentication")


def _container(service: str) -> dict[str, Any]:
    containers = DEPLOYMENTS[service]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _pod_labels(service: str) -> dict[str, str]:
    labels: dict[str, str] = DEPLOYMENTS[service]["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _secret_value(name: str, key: str) -> str:
    secret = SECRETS[name]
    return str({**secret.get("stringData", {}), **secret.get("data", {})}[key])


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here")
def test_kustomize_builds_offline() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(built) == len(k8s_objects())
    assert {d["metadata"].get("namespace") for d in built if d["kind"] != "Namespace"} == {
        load_yaml(K8S / "kustomization.yaml")["namespace"]
    }


def test_every_object_has_api_version_kind_and_name() -> None:
    expected = {
        "Deployment": "apps/v1", "Service": "v1", "PodDisruptionBudget": "policy/v1",
        "ScaledObject": "keda.sh/v1alpha1", "TriggerAuthentication": "keda.sh/v1alpha1",
        "ConfigMap": "v1", "Secret": "v1", "Namespace": "v1",
    }  # fmt: skip
    for obj in k8s_objects():
        assert expected[obj["kind"]] == obj["apiVersion"], obj["metadata"]
        assert obj["metadata"]["name"]


def test_one_of_each_per_service() -> None:
    for kind in (DEPLOYMENTS, SERVICE_OBJECTS, PDBS, SCALED_OBJECTS):
        assert set(kind) == set(SERVICES)


def test_one_image_for_all_services() -> None:
    images = {_container(s)["image"] for s in SERVICES}
    assert len(images) == 1
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert {i["name"] for i in kustomization.get("images", [])} <= {
        image.rsplit(":", 1)[0] for image in images
    }


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_runs_its_service_on_its_default_port(service: str) -> None:
    deployment = DEPLOYMENTS[service]
    assert _selects(deployment["spec"]["selector"]["matchLabels"], _pod_labels(service))
    container = _container(service)
    assert container["command"] == ["python", "-m", module_of(service)]
    port = default_http_port(service)
    assert [p["containerPort"] for p in container["ports"]] == [port]
    environment = {e["name"]: e for e in container.get("env", [])}
    assert environment["HTTP_PORT"]["value"] == str(port)


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_probes(service: str) -> None:
    container = _container(service)
    named_ports = {p.get("name"): p["containerPort"] for p in container["ports"]}

    def target(probe: dict[str, Any]) -> tuple[str, int]:
        http = probe["httpGet"]
        port = http["port"]
        return http["path"], named_ports[port] if isinstance(port, str) else port

    port = default_http_port(service)
    assert target(container["livenessProbe"]) == ("/health", port)
    assert target(container["readinessProbe"]) == ("/ready", port)
    if "startupProbe" in container:
        assert target(container["startupProbe"]) == ("/health", port)


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_resources_and_non_root(service: str) -> None:
    container = _container(service)
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][bound]), bound
    pod_security = DEPLOYMENTS[service]["spec"]["template"]["spec"].get("securityContext", {})
    security = {**pod_security, **container.get("securityContext", {})}
    assert security["runAsNonRoot"] is True
    assert security.get("runAsUser", 1) != 0
    assert security["allowPrivilegeEscalation"] is False
    assert "ALL" in security["capabilities"]["drop"]


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_environment_is_settings_the_service_reads(service: str) -> None:
    container = _container(service)
    names: set[str] = set()
    for source in container.get("envFrom", []):
        config_map = source["configMapRef"]["name"]
        assert config_map in CONFIG_MAPS, f"missing ConfigMap {config_map}"
        names |= set(CONFIG_MAPS[config_map]["data"])
    for variable in container.get("env", []):
        names.add(variable["name"])
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        if reference:
            _secret_value(reference["name"], reference["key"])  # exists
    unknown = names - settings_env_vars(service)
    assert not unknown, f"{service} sets variables no settings class reads: {sorted(unknown)}"
    assert {"AMQP_URL", "MONGO_URL", "REDIS_URL", "HTTP_HOST", "HTTP_PORT", "ENVIRONMENT"} <= names


def _resolved_environment(service: str) -> dict[str, str]:
    container = _container(service)
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environment.update(CONFIG_MAPS[source["configMapRef"]["name"]]["data"])
    for variable in container.get("env", []):
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        value = _secret_value(reference["name"], reference["key"]) if reference else None
        environment[variable["name"]] = str(variable.get("value", value))
    return environment


@pytest.mark.parametrize("service", SERVICES)
def test_production_refuses_the_kubernetes_placeholder_secrets(service: str) -> None:
    with pytest.raises(SettingsRefused) as refused:
        settings_for(service, _resolved_environment(service))
    for variable in ("AMQP_URL", "MONGO_URL", "REDIS_URL"):
        assert f"the {variable} password is a placeholder" in str(refused.value)


@pytest.mark.parametrize("service", SERVICES)
def test_service_accepts_its_kubernetes_environment_with_real_secrets(service: str) -> None:
    environment = with_real_secrets(_resolved_environment(service))
    settings = settings_for(service, environment)
    assert settings.environment == "production"
    assert settings.http.host == "0.0.0.0"
    assert settings.http.port == default_http_port(service)


@pytest.mark.parametrize("service", SERVICES)
def test_amqp_url_secret_is_the_service_user_on_the_orders_vhost(service: str) -> None:
    variable = next(e for e in _container(service)["env"] if e["name"] == "AMQP_URL")
    reference = variable["valueFrom"]["secretKeyRef"]
    value = _secret_value(reference["name"], reference["key"])
    urls = [urlsplit(u) for u in parse_amqp_urls(value)]
    assert len({u.hostname for u in urls}) == 3, "the three nodes of the cluster"
    for url in urls:
        assert url.username == service
        assert unquote(url.path.lstrip("/")) == VHOST
        assert "CHANGE-ME" in (url.password or ""), "placeholder, clearly marked"
        assert url.username in {u["name"] for u in definitions()["users"]}


def test_secrets_are_placeholders() -> None:
    for secret in SECRETS.values():
        for key, value in secret.get("stringData", {}).items():
            assert "CHANGE-ME" in value, f"{secret['metadata']['name']}/{key}"


@pytest.mark.parametrize("service", SERVICES)
def test_service_and_pdb_select_the_deployment_pods(service: str) -> None:
    spec = SERVICE_OBJECTS[service]["spec"]
    assert _selects(spec["selector"], _pod_labels(service))
    container = _container(service)
    named = {p.get("name"): p["containerPort"] for p in container["ports"]}
    for port in spec["ports"]:
        target = port.get("targetPort", port["port"])
        assert (named[target] if isinstance(target, str) else target) == default_http_port(service)
        assert port["port"] == default_http_port(service)
    pdb = PDBS[service]["spec"]
    assert _selects(pdb["selector"]["matchLabels"], _pod_labels(service))
    assert ("minAvailable" in pdb) != ("maxUnavailable" in pdb)


@pytest.mark.parametrize("service", SERVICES)
def test_scaled_object_scales_on_every_consumed_queue(service: str) -> None:
    spec = SCALED_OBJECTS[service]["spec"]
    assert spec["scaleTargetRef"]["name"] in DEPLOYMENTS
    assert spec["scaleTargetRef"]["name"] == service
    assert spec.get("scaleTargetRef", {}).get("kind", "Deployment") == "Deployment"
    triggers = spec["triggers"]
    assert all(t["type"] == "rabbitmq" for t in triggers)
    queues = [t["metadata"]["queueName"] for t in triggers]
    assert sorted(queues) == sorted(consumed_queues(service)), "one trigger per consumed queue"
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert metadata["mode"] == "QueueLength"
        assert float(metadata["value"]) > 0
        assert metadata.get("vhostName", VHOST) == VHOST
        authentication = TRIGGER_AUTHENTICATIONS[trigger["authenticationRef"]["name"]]
        for reference in authentication["spec"]["secretTargetRef"]:
            url = urlsplit(_secret_value(reference["name"], reference["key"]))
            assert url.username == "keda"
            if metadata.get("protocol") == "http":
                assert url.scheme in {"http", "https"}
    minimum, maximum = spec["minReplicaCount"], spec["maxReplicaCount"]
    assert 1 <= minimum <= maximum
    if service == "order":
        assert minimum >= 2, "the HTTP front door keeps two replicas"


def test_deployments_leave_replicas_to_keda() -> None:
    for service in SERVICES:
        assert "replicas" not in DEPLOYMENTS[service]["spec"], "kubectl apply would fight KEDA"
