"""Every deployment file parses; the Dockerfile builds a small, non-root image of one service."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import (
    DEPLOY,
    DOCKERFILE,
    DOCKERIGNORE,
    REPO,
    SERVICES,
    default_http_port,
    deployment_files,
    dockerfile_stages,
    exec_form,
    module_of,
)

pytestmark = pytest.mark.deploy

YAML_FILES = deployment_files((".yaml", ".yml"))
JSON_FILES = deployment_files((".json",))


def test_there_are_deployment_files() -> None:
    assert len(YAML_FILES) >= 10
    assert len(JSON_FILES) >= 2


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_parses(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents, f"{path} is empty"
    assert all(isinstance(d, dict) for d in documents)


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_json_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


def test_rabbitmq_plugin_file_is_an_erlang_list_with_prometheus() -> None:
    text = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text().strip()
    match = re.fullmatch(r"\[([a-z_,\s]*)\]\.", text)
    assert match, f"not an Erlang list term: {text!r}"
    plugins = {p.strip() for p in match.group(1).split(",")}
    assert {"rabbitmq_management", "rabbitmq_prometheus", "rabbitmq_shovel"} <= plugins


# --- Dockerfile ------------------------------------------------------------------------------

GLOBAL_ARGS, STAGES = dockerfile_stages(DOCKERFILE.read_text())
FINAL = STAGES[-1]


def _resolve(text: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: GLOBAL_ARGS.get(m.group(1), m.group(0)), text)


def _final(keyword: str) -> list[str]:
    """Arguments of the final stage's `keyword` instructions."""
    return [i.arguments for i in FINAL if i.keyword == keyword]


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    assert len(STAGES) >= 2
    for stage in STAGES:
        image = _resolve(stage[0].arguments.split()[0])
        assert image == "python:3.11-slim", image


def test_final_stage_runs_as_a_non_root_numeric_user() -> None:
    users = _final("USER")
    assert users, "the final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric UID lets Kubernetes' runAsNonRoot verify it"
    # Nothing after USER switches back.
    last = max(i for i, instruction in enumerate(FINAL) if instruction.keyword == "USER")
    assert all(i.keyword != "USER" for i in FINAL[last + 1 :])


def test_no_dev_or_test_extra_and_no_secantusdb_in_the_image() -> None:
    installs = [
        i.arguments for s in STAGES for i in s if i.keyword == "RUN" and "install" in i.arguments
    ]
    assert any(re.search(r"pip install\b.*\s\.(\s|$)", c) for c in installs), "no `pip install .`"
    for command in installs:
        for part in re.split(r"&&|;", command):
            if "install" in part:
                assert not re.search(r"secantus|\[(dev|test)", part, re.IGNORECASE), part
    final_text = " ".join(i.arguments for i in FINAL).lower()
    assert "secantus" not in final_text
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime = " ".join(pyproject["project"]["dependencies"]).lower()
    assert "secantus" not in runtime, "SecantusDB (GPL, dev only) is a runtime dependency"


def test_final_stage_has_no_build_tools_and_copies_only_the_virtualenv() -> None:
    for instruction in FINAL:
        if instruction.keyword == "RUN":
            assert not re.search(
                r"apt-get install|pip install|gcc|build-essential", instruction.arguments
            )
        if instruction.keyword == "COPY":
            assert instruction.arguments.startswith("--from="), f"final stage COPY: {instruction}"


def test_healthcheck_uses_python_on_health() -> None:
    checks = _final("HEALTHCHECK")
    assert len(checks) == 1
    command = exec_form(checks[0].split("CMD", 1)[1].strip())
    assert command[0] == "python"
    assert "/health" in command[-1]
    assert not {"curl", "wget"} & set(command)
    # Its fallback ports (HTTP_PORT unset) are the services' own defaults.
    fallback = dict(re.findall(r"'(\w+_service)': (\d+)", command[-1]))
    assert fallback == {module_of(s): str(default_http_port(s)) for s in SERVICES}


def test_cmd_runs_the_service_named_by_the_environment() -> None:
    commands = _final("CMD")
    assert commands
    command = exec_form(commands[-1])
    assert re.search(r"exec python -m \"?\$\{?SERVICE\}?\"?", " ".join(command)), command
    assert not _final("ENTRYPOINT"), "an ENTRYPOINT would turn command overrides into args"
    env = " ".join(_final("ENV"))
    default = re.search(r"\bSERVICE=(\S+)", env)
    assert default, "no default SERVICE"
    assert default.group(1) in {module_of(s) for s in SERVICES}


def test_dockerignore_keeps_local_state_out_and_sources_in() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".data", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"} <= patterns
    copied = [
        source
        for s in STAGES
        for i in s
        if i.keyword == "COPY" and not i.arguments.startswith("--from")
        for source in i.arguments.split()[:-1]
    ]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: no such file"
        assert source.rstrip("/") not in patterns, f"COPY {source} but .dockerignore excludes it"
