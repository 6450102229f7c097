"""The lock files: what dev setup, CI and the image install, kept in step with pyproject.toml.

`infra/bin/lock` writes them; these checks catch a dependency added to pyproject.toml without
re-locking, a pin that no longer satisfies its range, and an install path that skips hashes.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.manifests import DOCKERFILE, INFRA, REPO

pytestmark = pytest.mark.deploy

RUNTIME_LOCK = REPO / "requirements" / "runtime.txt"
DEV_LOCK = REPO / "requirements" / "dev.txt"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SELF = canonicalize_name(PYPROJECT["project"]["name"])


def pins(lock: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", lock.read_text(), re.MULTILINE)
    return {canonicalize_name(name): version for name, version in found}


def requirements(*extras: str) -> list[Requirement]:
    texts = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        texts += PYPROJECT["project"]["optional-dependencies"][extra]
    return [r for r in map(Requirement, texts) if canonicalize_name(r.name) != SELF]


@pytest.mark.parametrize(
    ("lock", "extras"),
    [(RUNTIME_LOCK, ()), (DEV_LOCK, ("otlp", "test", "dev", "bench"))],
    ids=["runtime", "dev"],
)
def test_every_declared_dependency_is_pinned_within_its_range(
    lock: Path, extras: tuple[str, ...]
) -> None:
    pinned = pins(lock)
    for requirement in requirements(*extras):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not in {lock.name}: run infra/bin/lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock.name} pins {name}=={pinned[name]}, outside {requirement}: run infra/bin/lock"
        )


def test_every_pin_has_a_hash_and_both_locks_agree() -> None:
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text().split("\n", 2)[-1])
        for block in (b for b in blocks if "==" in b):
            assert "--hash=sha256:" in block, f"{lock.name}: no hash for {block.splitlines()[0]}"
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    assert {name: dev.get(name) for name in runtime} == runtime


def test_dev_setup_and_image_install_from_the_locks_with_hashes() -> None:
    common = (INFRA / "bin" / "_common.sh").read_text()
    assert 'LOCK="$ROOT/requirements/dev.txt"' in common
    assert 'pip install --quiet --require-hashes -r "$LOCK"' in common
    assert "pip install --quiet --no-deps -e ." in common
    dockerfile = DOCKERFILE.read_text()
    assert "pip install --require-hashes -r requirements/runtime.txt" in dockerfile
    assert "pip install --no-deps ." in dockerfile
