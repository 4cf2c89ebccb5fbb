"""Fixtures shared by every test layer: fake AWS credentials and a port nothing listens on."""

from __future__ import annotations

import os

import pytest

from testkit.servers import free_port as pick_free_port

# Powertools reads the metrics namespace when house_prices.observability is first imported, which
# happens at collection time, before any fixture runs. Assigned, not defaulted, so a developer's
# shell cannot change what the tests' metric assertions see.
os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "HousePricesTest"

_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_METRICS_NAMESPACE": "HousePricesTest",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


@pytest.fixture(autouse=True)
def fake_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach a real AWS account from a test, and never inherit a developer's endpoints."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in {"AWS_PROFILE", "AWS_CONFIG_FILE"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    for name, value in _AWS_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def free_port() -> int:
    """A port that was free a moment ago: only for "nothing listens there" cases, never to bind a server."""
    return pick_free_port()
