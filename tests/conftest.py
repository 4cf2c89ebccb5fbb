"""Fixtures shared by every test layer: fake AWS credentials and free ports."""

from __future__ import annotations

import os
import socket

import pytest

# Powertools reads the metrics namespace when house_prices.observability is first imported, which
# happens at collection time, before any fixture runs.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "HousePricesTest")

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


def pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    return pick_free_port()
