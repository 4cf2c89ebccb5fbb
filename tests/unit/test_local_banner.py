"""`make up`'s banner: what to try next fits the state, and every command is one whole line."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.stack import StackInfo, print_banner

API = "http://127.0.0.1:40001"
INFO = StackInfo(
    api_url=API,
    endpoint_url="http://127.0.0.1:40002",
    s3_endpoint_url="http://127.0.0.1:40003",
    region="us-east-1",
    bucket="house-prices-mme-123456789012-us-east-1",
    prefix="DEMO_MME_SCIKIT_V1",
    model_data_url="s3://house-prices-mme-123456789012-us-east-1/DEMO_MME_SCIKIT_V1/multi_model_artifacts/",
    endpoint_name="house-prices-mme",
    registry_table="house-prices-local-RegistryTable",
    dynamodb_endpoint_url="http://127.0.0.1:40003",
    sqs_endpoint_url="http://127.0.0.1:40003",
    queues={},
    log_dir="/a/rather/long/path/to/the/logs/of/this/run/20261207-022455-14367",
    pid=1,
    resources={},
    state_dir="/tmp/state",
)


def banner(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, live: list[str] | None) -> str:
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal, or a pipe
    print_banner(INFO, 2.9, live_cities=live, stack_file=Path("/tmp/state/stack.json"))
    return capsys.readouterr().out


def test_empty_state_says_train_first_with_the_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stack with no live model
    lines = banner(capsys, monkeypatch, []).splitlines()
    # Then it says to train first, with the whole command on one line, and suggests no prediction that would 404
    assert any(line.startswith("No model is live yet") for line in lines)
    train = f"  .venv/bin/python -m training.jobs --cities Chicago_IL Dallas_TX --publish --bucket {INFO.bucket}"
    assert train in lines
    assert any(line.startswith("  export AWS_ACCESS_KEY_ID=local ") and "AWS_ENDPOINT_URL_S3" in line for line in lines)
    assert not any("/predictions" in line for line in lines)


def test_a_live_city_gets_a_prediction_for_that_city(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = banner(capsys, monkeypatch, ["Dallas_TX", "Austin_TX"]).splitlines()
    predict = [line for line in lines if "/predictions" in line]
    assert len(predict) == 1
    assert predict[0].startswith(f"  curl -s -X POST {API}/locations/Austin_TX/predictions -H ")
    assert predict[0].endswith("}'")
    assert not any(line.startswith("No model is live yet") for line in lines)


def test_values_are_never_cut(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    out = banner(capsys, monkeypatch, None)
    for value in (INFO.model_data_url, INFO.log_dir, "/tmp/state/stack.json"):
        assert value in out
    assert "…" not in out
    assert "/predictions" not in out  # unknown state: no prediction is suggested
