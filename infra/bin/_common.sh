# shellcheck shell=bash
# Sourced by infra/bin/up and infra/bin/test: go to the repo root and make sure .venv exists
# with the project installed. Not executable on its own.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
# The pinned, hashed dependencies of development and CI (infra/bin/lock writes them).
LOCK="$ROOT/requirements/dev.txt"
# Reinstall only when the lock or pyproject.toml (entry points) changes: a no-op
# `pip install` still costs seconds.
STAMP="$VENV/.lock.sha256"

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root or sudo to run: $*"
    fi
}

apt_install() {
    say "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

ensure_venv() {
    if [[ ! -x "$PY" ]]; then
        command -v python3 >/dev/null || apt_install python3 python3-venv
        python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || die "Python >= 3.11 is required, found $(python3 -V 2>&1)"
        say "creating $VENV"
        # Debian's python3 cannot create venvs (no ensurepip) until python3-venv is installed.
        if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
            rm -rf "$VENV"
            apt_install python3-venv
            python3 -m venv "$VENV"
        fi
    fi
    local want
    want="$(cat "$LOCK" pyproject.toml | sha256sum | cut -d' ' -f1)"
    if [[ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
        say "installing the locked dev dependencies (requirements/dev.txt or pyproject.toml changed)"
        # Exactly the pinned versions, each checked against its hash; then the project itself
        # without resolving anything (its dependencies are all in the lock).
        "$PY" -m pip install --quiet --require-hashes -r "$LOCK"
        "$PY" -m pip install --quiet --no-deps -e .
        printf '%s\n' "$want" >"$STAMP"
    fi
}
