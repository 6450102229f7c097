"""Write (or check) the generated contract documents.

    python -m contracts.docs           # write docs/asyncapi*.json and contracts/schemas/*.json
    python -m contracts.docs --check   # exit 1, saying what differs, if they are stale

Files written:
  docs/asyncapi.json                        the AsyncAPI 3.0.0 document on RabbitMQ
                                            (contracts.asyncapi)
  docs/asyncapi.<bus>.json                  the same events on another bus (EVENT_BUS):
                                            docs/asyncapi.nats.json (contracts.asyncapi_nats),
                                            docs/asyncapi.redis.json (contracts.asyncapi_redis)
  contracts/schemas/<EventType>.v<N>.json   the JSON Schema of each current event version
  contracts/schemas/Envelope.v1.json        the envelope's

Schema files of older versions are never written nor removed: they are the record of what was
published, which tests/unit/test_contracts_compat.py holds the current models to. For the same
reason this command refuses to overwrite the file of a current version with a breaking change:
bump the event's schema_version and register an upcaster instead (see contracts/versions.py).

Output is deterministic (sorted keys, fixed indentation), so re-running it changes nothing.
JSON rather than YAML because contracts depend on pydantic and the standard library only; any
AsyncAPI tool reads JSON.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from contracts.asyncapi import build_asyncapi
from contracts.asyncapi_nats import build_nats_asyncapi
from contracts.asyncapi_redis import build_redis_asyncapi
from contracts.compat import breaking_changes
from contracts.envelope import Envelope
from contracts.events import EVENT_SCHEMAS, Event

ASYNCAPI_PATH = "docs/asyncapi.json"
# The AsyncAPI document of each bus (EVENT_BUS), RabbitMQ's first; --check covers each.
ASYNCAPI_DOCUMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    ASYNCAPI_PATH: build_asyncapi,
    "docs/asyncapi.nats.json": build_nats_asyncapi,
    "docs/asyncapi.redis.json": build_redis_asyncapi,
}
SCHEMAS_DIR = "contracts/schemas"
ENVELOPE_TYPE = "Envelope"
# The envelope is not versioned on the wire; its schema file is v1 and may only grow compatibly.
ENVELOPE_VERSION = 1
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILE = re.compile(r"^(?P<type>[A-Za-z][A-Za-z0-9]*)\.v(?P<version>[1-9][0-9]*)\.json$")
# The checkout this module lives in (editable install), the default target of the command.
DEFAULT_ROOT = Path(__file__).resolve().parent.parent
_MAX_DIFF_LINES = 40


def render(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_path(event_type: str, version: int) -> str:
    return f"{SCHEMAS_DIR}/{event_type}.v{version}.json"


def event_schema_document(cls: type[Event]) -> dict[str, Any]:
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "x-event-type": cls.event_type,
        "x-schema-version": cls.schema_version,
        **cls.model_json_schema(),
    }


def envelope_schema_document() -> dict[str, Any]:
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "x-schema-version": ENVELOPE_VERSION,
        **Envelope.model_json_schema(),
    }


def expected_files() -> dict[str, str]:
    """Relative path -> content of every generated file (computed in memory, no I/O)."""
    files = {path: render(build()) for path, build in ASYNCAPI_DOCUMENTS.items()}
    files[schema_path(ENVELOPE_TYPE, ENVELOPE_VERSION)] = render(envelope_schema_document())
    for (event_type, version), cls in sorted(EVENT_SCHEMAS.items()):
        files[schema_path(event_type, version)] = render(event_schema_document(cls))
    return files


def stale_files(root: Path) -> dict[str, str]:
    """Relative path -> what is wrong with it, for every generated file that is missing or
    differs on disk."""
    problems: dict[str, str] = {}
    for relative, content in expected_files().items():
        path = root / relative
        if not path.exists():
            problems[relative] = "missing"
            continue
        current = path.read_text(encoding="utf-8")
        if current != content:
            changes = _breaking(relative, current, content)
            advice = breaking_advice(relative, changes) + "\n" if changes else ""
            problems[relative] = advice + _explain(relative, current, content)
    return problems


def write(root: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Write the generated files that changed. Returns (written paths, refused paths with the
    breaking changes that would have overwritten a published schema); when any is refused,
    nothing is written, so the documents never describe a half-applied change."""
    changed: dict[Path, str] = {}
    refused: dict[str, list[str]] = {}
    for relative, content in expected_files().items():
        path = root / relative
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        changes = _breaking(relative, current, content) if current is not None else []
        if changes:
            refused[relative] = changes
        changed[path] = content
    if refused:
        return [], refused
    for path, content in changed.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return [path.relative_to(root).as_posix() for path in changed], {}


def _breaking(relative: str, current: str, content: str) -> list[str]:
    if not relative.startswith(f"{SCHEMAS_DIR}/"):
        return []
    return breaking_changes(json.loads(current), json.loads(content))


def breaking_advice(relative: str, changes: Sequence[str]) -> str:
    match = SCHEMA_FILE.match(Path(relative).name)
    name, version = (match["type"], int(match["version"])) if match else (relative, 0)
    lines = [f"{relative}: breaking change to a published schema:"]
    lines += [f"  - {change}" for change in changes]
    if name == ENVELOPE_TYPE:
        lines.append(
            "  The envelope is not versioned: make the change additive (optional fields only)."
        )
    else:
        lines.append(
            f"  Bump {name}.schema_version to {version + 1}, register an upcaster from "
            f"v{version} in contracts/versions.py, and re-run `python -m contracts.docs` "
            f"(it keeps {name}.v{version}.json as the record of v{version})."
        )
    return "\n".join(lines)


def _explain(relative: str, current: str, expected: str) -> str:
    diff = list(
        difflib.unified_diff(
            current.splitlines(),
            expected.splitlines(),
            f"{relative} (on disk)",
            f"{relative} (generated)",
            lineterm="",
        )
    )
    shown = diff[:_MAX_DIFF_LINES]
    if len(diff) > len(shown):
        shown.append(f"... {len(diff) - len(shown)} more diff lines")
    return "differs:\n" + "\n".join(shown)


def _prog_name() -> str:
    # As infra.cli.prog_name (contracts import nothing of infra): the console script's name,
    # or `python -m contracts.docs`.
    invoked = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m contracts.docs" if not invoked or invoked.endswith(".py") else invoked


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=_prog_name(),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="repository root (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    root: Path = args.root
    if args.check:
        stale = stale_files(root)
        for relative, problem in stale.items():
            print(f"{relative}: {problem}", file=sys.stderr)
        if stale:
            print("stale: run `python -m contracts.docs` and commit the result", file=sys.stderr)
            return 1
        print(f"up to date: {len(expected_files())} files")
        return 0
    written, refused = write(root)
    for relative in written:
        print(f"wrote {relative}")
    for relative, changes in refused.items():
        print(breaking_advice(relative, changes), file=sys.stderr)
    if refused:
        return 1
    if not written:
        print("nothing to do: every file is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
