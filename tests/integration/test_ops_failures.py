"""`python -m ops failed` / `redrive` against S3, SQS and DynamoDB from moto, with real invocation records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.dispatcher import invocation_record
from ops.cli import main
from tests.integration.model_sync_harness import CITY, Stack, s3_put_event
from tests.unit.test_artifacts_inspection import build_artifact, realistic_metrics

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:house-prices-ModelSyncFunction"


@pytest.fixture
def failures(stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.chdir(tmp_path)  # never pick up a developer's .local/stack.json
    url = boto3.client("sqs").create_queue(QueueName="model-sync-failures")["QueueUrl"]
    monkeypatch.setenv("MODEL_SYNC_FAILURE_QUEUE_URL", url)
    return url


def record_failure(url: str, payload: Any, error: Exception) -> str:
    try:
        raise error
    except Exception as raised:  # a real traceback, as the dispatcher records it
        record = invocation_record(
            request_id="req-1", function_arn=FUNCTION_ARN, invoke_count=3, payload=payload, error=raised
        )
    return boto3.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(record))["MessageId"]


def ops(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(["--json", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_failed_lists_each_event_with_its_error_without_consuming_it(
    stack: Stack, failures: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two events that exhausted their attempts
    key = stack.upload(build_artifact(realistic_metrics()))
    first = record_failure(failures, s3_put_event(key), TimeoutError("DynamoDB did not answer"))
    second = record_failure(failures, {"not": "an S3 event"}, KeyError("Records"))
    # When the operator lists them, twice
    code, rows = ops(capsys, "failed")
    again_code, again = ops(capsys, "failed")
    # Then both are shown with the key, the attempts and the error, and listing consumed nothing
    assert code == again_code == 0
    assert {row["id"] for row in rows} == {first, second} == {row["id"] for row in again}
    by_id = {row["id"]: row for row in rows}
    assert by_id[first]["keys"] == [s3_put_event(key)["Records"][0]["s3"]["object"]["key"]]
    assert by_id[first]["attempts"] == 3
    assert by_id[first]["condition"] == "RetriesExhausted"
    assert (by_id[first]["error_type"], by_id[first]["error"]) == ("TimeoutError", "DynamoDB did not answer")
    assert by_id[second]["error_type"] == "KeyError"


def test_redrive_syncs_the_event_and_deletes_only_what_was_handled(
    stack: Stack, failures: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a valid training output whose event failed (e.g. the registry was down), and an unusable record
    key = stack.upload(build_artifact(realistic_metrics()))
    redrivable = record_failure(failures, s3_put_event(key), TimeoutError("DynamoDB did not answer"))
    broken = record_failure(failures, {"Records": [{"eventName": "ObjectCreated:Put"}]}, KeyError("s3"))
    # When the operator redrives everything
    code, rows = ops(capsys, "redrive")
    # Then the good event is synced (now live) and its record deleted; the broken one stays, with why
    outcomes = {row["id"]: row for row in rows}
    assert outcomes[redrivable]["outcome"] == "redriven"
    assert "promoted" in outcomes[redrivable]["detail"]
    assert outcomes[broken]["outcome"] == "failed again"
    assert "KeyError" in outcomes[broken]["detail"]
    assert code == 1  # not everything could be redriven
    assert stack.registry.live_model(CITY) is not None
    _, left = ops(capsys, "failed")
    assert [row["id"] for row in left] == [broken]


def test_redrive_of_selected_ids_leaves_the_others(
    stack: Stack, failures: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = stack.upload(build_artifact(realistic_metrics()))
    chosen = record_failure(failures, s3_put_event(key), TimeoutError("x"))
    other = record_failure(failures, s3_put_event(key), TimeoutError("y"))
    code, rows = ops(capsys, "redrive", chosen, "no-such-id")
    assert {(row["id"], row["outcome"]) for row in rows} == {(chosen, "redriven"), ("no-such-id", "not found")}
    assert code == 1
    _, left = ops(capsys, "failed")
    assert [row["id"] for row in left] == [other]


def test_failed_without_a_queue_says_where_to_find_one(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODEL_SYNC_FAILURE_QUEUE_URL", raising=False)
    assert main(["--json", "failed"]) == 1
    error = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert "MODEL_SYNC_FAILURE_QUEUE_URL" in error["message"]
