"""local.moto_services + local.journal as a real child process: state survives SIGKILL, torn writes, and is owned
by one moto."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from local.journal import JOURNAL_NAME, surviving_messages

REGION = "us-east-1"
BUCKET = "journal-test-bucket"
TABLE = "journal-test-table"
SPEC = {
    "region": REGION,
    "buckets": [BUCKET],
    "tables": [TABLE],
    "functions": [
        {
            "function_id": "Sync",
            "queue_name": "journal-events",
            "on_failure_queue_name": "journal-failures",
            "max_attempts": 3,
            "timeout": 5,
            "triggers": [
                {
                    "event_name": "Upload",
                    "bucket_logical_id": "Bucket",
                    "bucket_name": BUCKET,
                    "events": ["s3:ObjectCreated:*"],
                    "prefix": "in/",
                    "suffix": "",
                }
            ],
        }
    ],
}


def moto_argv(ready: Path) -> list[str]:
    return [sys.executable, "-m", "local.moto_services", "--ready-file", str(ready), "--spec", json.dumps(SPEC)]


@contextmanager
def moto_process(state_dir: Path, tmp: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    ready = tmp / f"ready-{time.monotonic_ns()}.json"
    log = (tmp / "moto.log").open("ab")
    process = subprocess.Popen(
        [*moto_argv(ready), "--state-dir", str(state_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.is_file():
            assert process.poll() is None, (tmp / "moto.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "moto not ready"
            time.sleep(0.05)
        yield process, json.loads(ready.read_text())
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        log.close()


def clients(url: str) -> dict[str, Any]:
    options = {
        "endpoint_url": url,
        "region_name": REGION,
        "aws_access_key_id": "local",
        "aws_secret_access_key": "local",
        "config": Config(retries={"max_attempts": 1}),
    }
    return {service: boto3.client(service, **options) for service in ("s3", "dynamodb", "sqs")}  # type: ignore[call-overload]


def test_s3_dynamodb_and_sqs_state_survive_sigkill_of_moto(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    big = os.urandom(9 * 1024 * 1024)  # above boto3's multipart threshold: replay must map upload ids
    with moto_process(state_dir, tmp_path) as (process, facts):
        aws = clients(facts["endpoint_url"])
        queue_url = facts["queues"][0]["queue_url"]
        # Given objects (one with a key that needs encoding, one multipart), items and messages
        aws["s3"].put_object(Bucket=BUCKET, Key="in/a b+c=d%.txt", Body=b"odd key")
        aws["s3"].upload_fileobj(io.BytesIO(big), BUCKET, "big/multipart.bin")
        aws["s3"].put_object(Bucket=BUCKET, Key="gone.txt", Body=b"deleted later")
        aws["s3"].delete_object(Bucket=BUCKET, Key="gone.txt")
        aws["dynamodb"].put_item(
            TableName=TABLE, Item={"city": {"S": "Chicago_IL"}, "record": {"S": "V#1"}, "n": {"N": "1"}}
        )
        aws["dynamodb"].update_item(
            TableName=TABLE,
            Key={"city": {"S": "Chicago_IL"}, "record": {"S": "V#1"}},
            UpdateExpression="SET n = n + :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
        aws["sqs"].send_message(QueueUrl=queue_url, MessageBody="consumed")
        kept = aws["sqs"].send_message(QueueUrl=queue_url, MessageBody="kept")["MessageId"]
        received = aws["sqs"].receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        for message in received:
            if message["Body"] == "consumed":
                aws["sqs"].delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        stamps = {o["Key"]: o["LastModified"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]}
        time.sleep(1.1)  # a replay that stamped "now" would show a different second
        # When moto is killed without any chance to save anything
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    with moto_process(state_dir, tmp_path) as (_, facts):
        aws = clients(facts["endpoint_url"])
        # Then every acknowledged write is back, and nothing that was deleted
        keys = {o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]}
        assert keys == {"in/a b+c=d%.txt", "big/multipart.bin"}
        # with the same LastModified (model-sync derives version names from it)
        assert {o["Key"]: o["LastModified"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]} == stamps
        restored = aws["s3"].get_object(Bucket=BUCKET, Key="big/multipart.bin")["Body"].read()
        assert hashlib.sha256(restored).digest() == hashlib.sha256(big).digest()
        item = aws["dynamodb"].get_item(TableName=TABLE, Key={"city": {"S": "Chicago_IL"}, "record": {"S": "V#1"}})[
            "Item"
        ]
        assert item["n"] == {"N": "2"}
        queue_url = facts["queues"][0]["queue_url"]
        bodies = {}
        for message in aws["sqs"].receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]:
            bodies[message["MessageId"]] = message["Body"]
        # the unconsumed message, with its id; S3's test events (one per start); not the consumed one
        assert bodies[kept] == "kept"
        assert "consumed" not in bodies.values()
        assert facts["replayed"]["failed_requests"] == 0


def test_a_torn_last_line_is_skipped_and_the_rest_restored(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with moto_process(state_dir, tmp_path) as (process, facts):
        clients(facts["endpoint_url"])["s3"].put_object(Bucket=BUCKET, Key="kept.txt", Body=b"x")
        process.send_signal(signal.SIGKILL)
    # Given a journal whose last write was cut short by the crash
    with (state_dir / JOURNAL_NAME).open("ab") as journal:
        journal.write(b'{"kind":"http","method":"PUT","target":"/journal-test-bucket/torn.txt","hea')
    # When moto starts again
    with moto_process(state_dir, tmp_path) as (_, facts):
        keys = {o["Key"] for o in clients(facts["endpoint_url"])["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]}
    # Then the complete entries are restored and the torn one is dropped
    assert keys == {"kept.txt"}


def test_a_second_moto_on_the_same_state_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with moto_process(state_dir, tmp_path):
        # When another moto is started on the same state directory
        second = subprocess.run(
            [*moto_argv(tmp_path / "second.json"), "--state-dir", str(state_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    # Then it refuses, naming the owner, instead of corrupting the journal
    assert second.returncode != 0
    assert "in use by pid" in second.stderr


def test_surviving_messages_follow_deletes_purges_and_redrive_moves() -> None:
    where = {"account": "1", "region": REGION}
    entries = [
        {"kind": "sqs-add", **where, "queue": "q", "id": "a", "body": "A"},
        {"kind": "sqs-add", **where, "queue": "q", "id": "b", "body": "B"},
        {"kind": "sqs-add", **where, "queue": "q", "id": "c", "body": "C"},
        {"kind": "sqs-delete", **where, "queue": "q", "id": "a"},
        {"kind": "sqs-add", **where, "queue": "dlq", "id": "b", "body": "B"},  # moved by a redrive
        {"kind": "sqs-purge", **where, "queue": "q"},
    ]
    assert [(m["queue"], m["id"]) for m in surviving_messages(entries)] == [("dlq", "b")]
