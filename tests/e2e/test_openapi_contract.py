"""Schemathesis against the running local stack, driven by the API's own /openapi.json.

Bounded: at most MAX_EXAMPLES cases per operation and phase (about 150 requests, a few seconds).
Checks: no 5xx, status codes, content types and bodies as documented, schema-valid requests accepted,
schema-violating ones rejected with a documented 4xx.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from house_prices import openapi
from local.stack import LocalStack

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 50
# API Gateway answers a method no route has with 404 {"message": "Not Found"}, not 405: Schemathesis'
# unsupported_method check expects 405 and is off. A batch over the limit is 413 (documented), which
# Schemathesis does not count as a rejection by default.
# POST /feedback refuses a schema-valid label whose prediction id is older than the retention window or in
# the future (400 naming prediction_id): the clock is no part of a schema, so 400 is an accepted answer there.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "404", "413"]

[[operations]]
include-path = "/feedback"
checks.positive_data_acceptance.expected-statuses = ["202", "400"]
"""


def test_the_served_document_is_the_generated_one(stack: LocalStack) -> None:
    response = httpx.get(f"{stack.info.api_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.json() == openapi.openapi_document()


def test_the_api_keeps_its_openapi_contract(stack: LocalStack, trained: dict, tmp_path: Path) -> None:
    # Given the running stack with live models, and its own OpenAPI document
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    # When Schemathesis generates valid and invalid requests for every operation
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(config),
            "run",
            f"{stack.info.api_url}/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "unsupported_method",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "20",
            "--seed",
            "20261129",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    # Then every response keeps the contract
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
