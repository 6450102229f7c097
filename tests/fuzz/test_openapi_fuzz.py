"""schemathesis against every service's OpenAPI document: no 5xx, no response that breaks the
documented schema, status codes or content types. Bounded (seeded, a fixed number of examples
per operation, a subprocess timeout) and aimed at 127.0.0.1 only."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from schemathesis import openapi as schemathesis_openapi

from tests.e2e.pipeline import Pipeline, pipeline_fixture

pytestmark = pytest.mark.fuzz
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


# A pipeline of its own: fuzzed logins rate-limit 127.0.0.1 and the fuzzed admin endpoints
# restock whatever SKUs they name, which no other test's pipeline should see.
fuzzed_pipeline = pipeline_fixture("fuzzed_pipeline", seed=(60, 100))


def login(pipeline: Pipeline) -> str:
    base = pipeline.url("order")
    account = {"email": f"{uuid.uuid4().hex[:8]}@example.com", "password": "fuzzing-password"}
    httpx.post(f"{base}/customers", json={**account, "name": "Fuzz"}, timeout=10)
    session = httpx.post(f"{base}/sessions", json=account, timeout=10)
    session.raise_for_status()
    return str(session.json()["token"])


def schemathesis(pipeline: Pipeline, service: str, *options: str) -> None:
    result = subprocess.run(
        [
            SCHEMATHESIS, "run", f"{pipeline.url(service)}/openapi.json",
            "--checks", CHECKS, "--max-examples", "25",
            "--phases", "examples,coverage,fuzzing", "--seed", "20261122",
            # One worker: schemathesis 4.32 crashes in its own threads on some schemas here.
            "--workers", "1",
            *options,
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


@pytest.mark.parametrize("service", ["payment", "notification"])
def test_service_api_survives_fuzzing(fuzzed_pipeline: Pipeline, service: str) -> None:
    schemathesis(fuzzed_pipeline, service)


def test_inventory_api_survives_fuzzing_as_an_operator(fuzzed_pipeline: Pipeline) -> None:
    # With the admin token, the admin endpoints are fuzzed past their 401.
    admin = "Authorization: Bearer dev-admin-token"
    schemathesis(fuzzed_pipeline, "inventory", "-H", admin)


def test_order_api_survives_fuzzing_as_a_logged_in_customer(fuzzed_pipeline: Pipeline) -> None:
    # Logout would end the session the rest of the run uses, so it is fuzzed on its own with
    # a second session. Both log in first: fuzzed failed logins soon rate-limit this address.
    main, spare = (f"Authorization: Bearer {login(fuzzed_pipeline)}" for _ in range(2))
    schemathesis(fuzzed_pipeline, "order", "-H", main, "--exclude-path", "/sessions/current")
    schemathesis(fuzzed_pipeline, "order", "-H", spare, "--include-path", "/sessions/current")


# The inputs that once got a plain-text 500 (issue 11 item 9), sent through schemathesis so its
# checks (no 5xx, documented status, content type, schema and headers) judge the answers too.
def _cursor(created_at: str, order_id: str) -> str:
    raw = json.dumps([created_at, order_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


HOSTILE_CURSORS = [
    _cursor("9999-12-31T23:59:59-14:00", "x"),  # year 10000 in UTC: outside BSON dates
    _cursor("0001-01-01T00:00:00+14:00", "x"),
]
WEBHOOK_BASE = "https://hooks.example.com/"
HOSTILE_WEBHOOKS = [WEBHOOK_BASE + "a" * (n - len(WEBHOOK_BASE)) for n in (2001, 2083)]


@pytest.mark.security
def test_the_inputs_that_once_got_a_500_pass_schemathesis_checks(
    fuzzed_pipeline: Pipeline,
) -> None:
    base = fuzzed_pipeline.url("order")
    auth = {"Authorization": f"Bearer {login(fuzzed_pipeline)}"}
    schema = schemathesis_openapi.from_url(f"{base}/openapi.json")
    statuses = []
    for cursor in HOSTILE_CURSORS:
        case = schema["/orders"]["GET"].Case(query={"cursor": cursor})
        statuses.append(case.call_and_validate(base_url=base, headers=auth).status_code)
    preference = schema["/customers/me/notification-preference"]["PUT"]
    for url in HOSTILE_WEBHOOKS:
        case = preference.Case(body={"channel": "webhook", "webhook_url": url})
        statuses.append(case.call_and_validate(base_url=base, headers=auth).status_code)
    assert statuses == [400, 400, 422, 422]
