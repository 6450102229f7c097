"""Write (or check) the OpenAPI documents of the four services.

    python -m infra.openapi            # write docs/openapi/<service>.json
    python -m infra.openapi --check    # exit 1, saying what differs, if they are stale

Generated from the code (each service's `openapi_app()`, no server started), deterministic
(sorted keys), like contracts.docs does for the events. The checked-in documents are what clients
were given: `breaking_changes` tells what a new document would break for them (an operation
removed or its id changed, a request that the service would now reject, a success response
that lost a field clients may read); tests/unit/test_openapi_compat.py holds the code to the
checked-in files, and a breaking change needs a deliberate regeneration.

The services are found by module name (`<service>_service.main`), so the shared runtime does
not import them at import time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contracts.compat import breaking_changes as schema_breaking_changes
from infra.cli import prog_name
from infra.devstack.services import SERVICES

OPENAPI_DIR = "docs/openapi"
DEFAULT_ROOT = Path(__file__).resolve().parent.parent
Document = Mapping[str, Any]
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def document(service: str) -> dict[str, Any]:
    # A document describes the code, not a deployment: the app is built with development
    # settings whatever ENVIRONMENT says (production's guardrails refuse the local defaults).
    saved = os.environ.get("ENVIRONMENT")
    os.environ["ENVIRONMENT"] = "development"
    try:
        app = importlib.import_module(f"{service}_service.main").openapi_app()
    finally:
        if saved is None:
            del os.environ["ENVIRONMENT"]
        else:
            os.environ["ENVIRONMENT"] = saved
    doc: dict[str, Any] = app.openapi()
    return doc


def render(doc: Document) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[str, str]:
    return {f"{OPENAPI_DIR}/{service}.json": render(document(service)) for service in SERVICES}


def _operations(doc: Document) -> dict[tuple[str, str], Document]:
    return {
        (method.upper(), path): operation
        for path, item in doc.get("paths", {}).items()
        for method, operation in item.items()
        if method in METHODS
    }


def _with_components(doc: Document, schema: Document) -> dict[str, Any]:
    # contracts.compat resolves `#/components/schemas/...` against the schema it is given.
    return {**schema, "components": doc.get("components", {})}


def _json_schema(doc: Document, holder: Document | None) -> dict[str, Any] | None:
    content = (holder or {}).get("content", {}).get("application/json")
    return _with_components(doc, content["schema"]) if content and "schema" in content else None


def _resolve(doc: Document, schema: Document) -> Document:
    while "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def _request_changes(old: Document, new: Document, op: Document, new_op: Document) -> list[str]:
    changes: list[str] = []
    old_params = {(p["in"], p["name"]): p for p in op.get("parameters", [])}
    for param in new_op.get("parameters", []):
        key = (param["in"], param["name"])
        if param.get("required") and not old_params.get(key, {}).get("required"):
            changes.append(f"new required {param['in']} parameter {param['name']!r}")
        elif key in old_params and "schema" in param:
            old_param = _with_components(old, old_params[key].get("schema", {}))
            new_param = _with_components(new, param["schema"])
            changes += schema_breaking_changes(old_param, new_param, name=param["name"])
    old_body, new_body = op.get("requestBody"), new_op.get("requestBody")
    if new_body and new_body.get("required") and not (old_body or {}).get("required"):
        changes.append("request body now required")
    old_schema, new_schema = _json_schema(old, old_body), _json_schema(new, new_body)
    if old_schema and new_schema:
        changes += schema_breaking_changes(old_schema, new_schema, name="request body")
    return changes


def _response_changes(old: Document, new: Document, op: Document, new_op: Document) -> list[str]:
    changes: list[str] = []
    for status, response in op.get("responses", {}).items():
        if not status.startswith("2"):
            continue  # error shapes are documented apart; clients branch on the status
        new_response = new_op.get("responses", {}).get(status)
        if new_response is None:
            changes.append(f"response {status} removed")
            continue
        old_schema, new_schema = _json_schema(old, response), _json_schema(new, new_response)
        if not (old_schema and new_schema):
            continue
        old_fields = _resolve(old, old_schema).get("properties", {})
        new_fields = _resolve(new, new_schema).get("properties", {})
        changes += [
            f"response {status}: field {name!r} removed"
            for name in old_fields
            if name not in new_fields
        ]
    return changes


def breaking_changes(old: Document, new: Document) -> list[str]:
    """What `new` breaks for a client written against `old`, as "<METHOD path>: <what>"."""
    changes: list[str] = []
    new_operations = _operations(new)
    for key, op in sorted(_operations(old).items()):
        label = f"{key[0]} {key[1]}"
        new_op = new_operations.get(key)
        if new_op is None:
            changes.append(f"{label}: operation removed")
            continue
        if op.get("operationId") != new_op.get("operationId"):
            changes.append(
                f"{label}: operationId {op.get('operationId')!r} -> {new_op.get('operationId')!r}"
            )
        found = _request_changes(old, new, op, new_op) + _response_changes(old, new, op, new_op)
        changes += [f"{label}: {change}" for change in found]
    return changes


def stale(root: Path) -> dict[str, list[str]]:
    """Relative path -> its problems ("missing", "stale", breaking changes) for each file."""
    problems: dict[str, list[str]] = {}
    for relative, content in expected_files().items():
        path = root / relative
        if not path.exists():
            problems[relative] = ["missing"]
        elif path.read_text(encoding="utf-8") != content:
            old = json.loads(path.read_text(encoding="utf-8"))
            problems[relative] = ["stale", *breaking_changes(old, json.loads(content))]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog_name("infra.openapi"),
        description="Write docs/openapi/<service>.json from the services' code.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a document is stale")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    problems = stale(args.root)
    if args.check:
        for relative, found in problems.items():
            print(f"{relative}: " + "; ".join(found), file=sys.stderr)
        if problems:
            print("run: python -m infra.openapi", file=sys.stderr)
        return 1 if problems else 0
    for relative, content in expected_files().items():
        if relative in problems:
            path = args.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            breaking = problems[relative][1:]
            print(f"wrote {relative}" + (f" (BREAKING: {'; '.join(breaking)})" if breaking else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
