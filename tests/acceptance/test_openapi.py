"""The OpenAPI document, fuzzed with schemathesis (bounded).

* GET /v3/api-docs answers an OpenAPI 3.1 document; /swagger-ui.html leads to the API explorer.
* schemathesis, logged in as a tenant administrator of its own session, sends a few generated
  requests to every operation and finds no 5xx answer and no answer outside the document
  (status, content type, body schema). Operations that would end its session or change a
  password are left out, as are the device API's long polls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from acc_support import TENANT_EMAIL, TENANT_PASSWORD, Rest, login

# Bounds: examples per operation and the run's time budget (seconds).
MAX_EXAMPLES = os.environ.get("ACCEPTANCE_SCHEMATHESIS_EXAMPLES", "5")
MAX_TIME = os.environ.get("ACCEPTANCE_SCHEMATHESIS_SECONDS", "60")

EXCLUDED = [
    "/api/auth/logout",
    "/api/auth/changePassword",
    "/api/v1/{token}/rpc",
    "/api/v1/{token}/attributes/updates",
    # WebSocket upgrades, not plain HTTP answers.
    "/api/ws",
    "/api/ws/plugins/telemetry",
]


def test_the_document_is_served(http_url):
    resp = Rest(http_url).get("/v3/api-docs")
    assert resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}"
    doc = resp.json()
    assert doc["openapi"] == "3.1.0"
    assert "/api/device/{deviceId}" in doc["paths"]
    explorer = Rest(http_url).get("/swagger-ui/")
    assert explorer.status_code == 200 and "swagger-ui" in explorer.text


def test_schemathesis_finds_no_server_error(http_url, tmp_path: Path):
    resp = login(http_url, TENANT_EMAIL, TENANT_PASSWORD)
    assert resp.status_code == 200, resp.text[:300]
    token = resp.json()["token"]
    report = tmp_path / "schemathesis.json"
    cli = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(cli),
        "run",
        f"{http_url}/v3/api-docs",
        "--header",
        f"X-Authorization: Bearer {token}",
        "--max-examples",
        MAX_EXAMPLES,
        "--max-time",
        MAX_TIME,
        "--request-timeout",
        "10",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--phases",
        "examples,fuzzing",
        "--mode",
        "positive",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    for path in EXCLUDED:
        cmd += ["--exclude-path", path]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=int(MAX_TIME) + 120)
    summary = run.stdout[-6000:]
    print(summary)
    assert run.returncode == 0, f"schemathesis failed (exit {run.returncode}):\n{summary}\n{run.stderr[-2000:]}"
    assert report.exists() and report.stat().st_size > 0, "schemathesis wrote its report"
    # The run tested operations, not nothing.
    events = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    assert events, "schemathesis recorded events"
