"""`python -m ops status` as a real process against a moto server described by a local stack file:
live versions from DynamoDB, failed events peeked from SQS (any record shape), alarms from CloudWatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from house_prices.registry import ModelRegistry
from local.moto_services import MotoServer, client, create_table
from tests.model_versions import model_version

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
STACK = "house-prices-local"
TABLE = "registry"
VERSION = "20261125T040000Z-1a2b3c4d"
DESTINATION_RECORD = {
    "version": "1.0",
    "timestamp": "2026-11-25T04:00:00.000Z",
    "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
    "requestPayload": {
        "Records": [{"s3": {"object": {"key": "P/model_artifacts/Chicago_IL/job/output/model.tar.gz"}}}]
    },
    "responsePayload": {"errorType": "InvalidArtifact", "errorMessage": "metrics.json is missing"},
}


@pytest.fixture
def moto_stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with MotoServer() as server:
        # moto's backends are process-wide: start from nothing, whatever ran before in this process.
        urllib.request.urlopen(urllib.request.Request(f"{server.url}/moto-api/reset", method="POST"), timeout=10)
        dynamodb = client("dynamodb", server.url, REGION)
        create_table(dynamodb, TABLE)
        registry = ModelRegistry(dynamodb, TABLE)
        chicago = model_version("Chicago_IL", VERSION, metrics={"validation_ae_p50": 12000.5}, prefix="P")
        registry.record_version(chicago)
        registry.promote("Chicago_IL", VERSION)
        sqs = client("sqs", server.url, REGION)
        dlq = sqs.create_queue(QueueName="ModelSyncFunction-dlq")["QueueUrl"]
        stack_file = tmp_path / "stack.json"
        stack_file.write_text(
            json.dumps(
                {
                    "s3_endpoint_url": server.url,
                    "sqs_endpoint_url": server.url,
                    "region": REGION,
                    "bucket": "bucket",
                    "prefix": "P",
                    "registry_table": TABLE,
                    "queues": {"ModelSyncFunction": {"queue_url": "unused", "on_failure_url": dlq}},
                    "resources": {"stack_name": STACK},
                }
            )
        )
        yield {"url": server.url, "sqs": sqs, "dlq": dlq, "file": stack_file}


def ops_status(stack_file: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_ENDPOINT_URL")}
    completed = subprocess.run(
        [sys.executable, "-m", "ops", "--stack-file", str(stack_file), *extra, "--json", "status"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return completed.returncode, json.loads(completed.stdout or "{}"), completed.stderr


def test_status_summarises_live_versions_failed_events_and_alarms(moto_stack: dict[str, Any]) -> None:
    # Given a Lambda destination record and a raw S3 event and a non-JSON body in the failure queue
    sqs = moto_stack["sqs"]
    sqs.send_message(QueueUrl=moto_stack["dlq"], MessageBody=json.dumps(DESTINATION_RECORD))
    s3_event = {"Records": [{"s3": {"object": {"key": "P/model_artifacts/Austin_TX/job/output/model.tar.gz"}}}]}
    sqs.send_message(
        QueueUrl=moto_stack["dlq"],
        MessageBody=json.dumps(s3_event),
        MessageAttributes={"ErrorMessage": {"DataType": "String", "StringValue": "Task timed out"}},
    )
    sqs.send_message(QueueUrl=moto_stack["dlq"], MessageBody="not json")
    # And one alarm of this stack firing in CloudWatch, one of another stack
    cloudwatch = client("cloudwatch", moto_stack["url"], REGION)
    for name in (f"{STACK}-model-errors", "other-stack-model-errors"):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="HousePrices",
            MetricName="RequestErrors",
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    cloudwatch.set_alarm_state(AlarmName=f"{STACK}-model-errors", StateValue="ALARM", StateReason="1 model error")

    # When the operator asks for the status
    code, report, stderr = ops_status(moto_stack["file"])

    # Then it lists the live version
    assert code == 0, stderr
    assert [(row["city"], row["version"]) for row in report["live"]] == [("Chicago_IL", VERSION)]
    # And every failed event, summarised whatever its shape, without consuming it
    events = report["failed_events"]
    assert events["approximate_count"] == 3
    by_key = {event["key"]: event for event in events["peeked"]}
    chicago = by_key["P/model_artifacts/Chicago_IL/job/output/model.tar.gz"]
    assert (chicago["condition"], chicago["error"]) == ("RetriesExhausted", "metrics.json is missing")
    assert by_key["P/model_artifacts/Austin_TX/job/output/model.tar.gz"]["attributes"] == {
        "ErrorMessage": "Task timed out"
    }
    assert by_key[None]["error"] == "not json"
    attributes = sqs.get_queue_attributes(QueueUrl=moto_stack["dlq"], AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "3"
    # And only this stack's alarms, firing first
    assert [(a["name"], a["state"]) for a in report["alarms"]["alarms"]] == [(f"{STACK}-model-errors", "ALARM")]
    assert report["alarms"]["firing"] == [f"{STACK}-model-errors"]
    assert report["needs_attention"] is True


def test_status_of_a_quiet_local_stack_says_why_it_shows_no_alarms(moto_stack: dict[str, Any]) -> None:
    # Given the local stack: an empty failure queue and no alarms (it creates none)
    # When the operator asks for the status, as a table
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_ENDPOINT_URL")}
    completed = subprocess.run(
        [sys.executable, "-m", "ops", "--stack-file", str(moto_stack["file"]), "status"],
        cwd=ROOT,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it succeeds and says so plainly
    assert completed.returncode == 0, completed.stderr
    assert "Failed model-sync events: none (queue " in completed.stdout
    assert f"no alarms named {STACK}-*" in completed.stdout
    assert "Status: nothing waiting, no alarm firing" in completed.stdout
