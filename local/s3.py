"""Local S3 (with event notifications), SQS and DynamoDB: one moto server on 127.0.0.1.

On AWS, S3 invokes the model-sync Lambda asynchronously for every training output that matches
the function's S3 event filter. Locally, moto delivers the same S3 event to an SQS queue (moto
supports S3 → SQS notifications in server mode) and :mod:`local.dispatcher` plays Lambda's
asynchronous invoker. The notification's prefix/suffix filter, the bucket and the retry count
come from ``template.yaml``; nothing here is specific to this project's keys.

``python -m local.s3 --ready-file F`` serves until SIGTERM/SIGINT; the stack runs it as a child.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from house_prices.registry import create_table
from local.process import LOCAL_HOST
from local.template import S3Trigger

DLQ_SUFFIX = "-dlq"
# The dispatcher extends visibility on retries; this is only the first attempt's budget.
_MIN_VISIBILITY_SECONDS = 30


class MotoServer:
    """moto's threaded server on 127.0.0.1 and an OS-assigned port (no port race)."""

    def __init__(self, host: str = LOCAL_HOST, port: int = 0) -> None:
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.url = ""

    def start(self) -> str:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def client(service: str, endpoint_url: str, region: str) -> Any:
    """A boto3 client for the local services, with fake credentials and no retries to hide errors."""
    # The service is chosen at run time; boto3-stubs only types literal service names.
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"mode": "standard", "max_attempts": 2}),
    )


@dataclass(frozen=True)
class EventQueue:
    """The queue that carries one function's S3 events, and its dead-letter queue."""

    function_id: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    max_receive_count: int


def create_bucket(endpoint_url: str, region: str, bucket: str) -> None:
    s3 = client("s3", endpoint_url, region)
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    with suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(**kwargs)


def create_registry_table(endpoint_url: str, region: str, table: str) -> None:
    dynamodb = client("dynamodb", endpoint_url, region)
    with suppress(dynamodb.exceptions.ResourceInUseException):
        create_table(dynamodb, table)


def create_event_queue(
    endpoint_url: str,
    region: str,
    function_id: str,
    queue_name: str,
    max_attempts: int,
    function_timeout_seconds: int,
) -> EventQueue:
    """A queue plus DLQ; SQS itself moves a message to the DLQ after ``max_attempts`` receives."""
    sqs = client("sqs", endpoint_url, region)
    dlq_url = sqs.create_queue(QueueName=f"{queue_name}{DLQ_SUFFIX}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=queue_name,
        Attributes={
            # A message in flight must outlive the function's own timeout, as Lambda requires of SQS sources.
            "VisibilityTimeout": str(max(_MIN_VISIBILITY_SECONDS, function_timeout_seconds + 5)),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_attempts)}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return EventQueue(function_id, queue_url, queue_arn, dlq_url, max_attempts)


def subscribe(endpoint_url: str, region: str, triggers: Sequence[tuple[S3Trigger, EventQueue]]) -> None:
    """Put each bucket's notification configuration: one QueueConfiguration per template S3 event.

    S3 answers a new configuration with an ``s3:TestEvent`` message on each queue; the dispatcher
    skips it, as Lambda never sees it on AWS.
    """
    s3 = client("s3", endpoint_url, region)
    by_bucket: dict[str, list[dict[str, Any]]] = {}
    for trigger, queue in triggers:
        rules = [
            {"Name": name, "Value": value}
            for name, value in (("prefix", trigger.prefix), ("suffix", trigger.suffix))
            if value
        ]
        configuration: dict[str, Any] = {
            "Id": f"{queue.function_id}-{trigger.event_name}",
            "QueueArn": queue.queue_arn,
            "Events": list(trigger.events),
        }
        if rules:
            configuration["Filter"] = {"Key": {"FilterRules": rules}}
        by_bucket.setdefault(trigger.bucket_name, []).append(configuration)
    for bucket, configurations in by_bucket.items():
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": configurations}
        )


# --- child-process entry point -----------------------------------------------------------------


def _provision(url: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Create what ``spec`` (built by local.stack from the template) describes; return queue facts."""
    region = spec["region"]
    for bucket in spec["buckets"]:
        create_bucket(url, region, bucket)
    for table in spec["tables"]:
        create_registry_table(url, region, table)
    queues: list[dict[str, Any]] = []
    subscriptions: list[tuple[S3Trigger, EventQueue]] = []
    for function in spec["functions"]:
        queue = create_event_queue(
            url, region, function["function_id"], function["queue_name"], function["max_attempts"], function["timeout"]
        )
        queues.append(asdict(queue))
        subscriptions.extend((S3Trigger(**trigger), queue) for trigger in function["triggers"])
    subscribe(url, region, subscriptions)
    return {"endpoint_url": url, "queues": queues}


def main(argv: list[str] | None = None) -> int:
    from local.process import stop_event, write_ready_file

    parser = argparse.ArgumentParser(description="moto server (S3/SQS/DynamoDB) for the local stack")
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--spec", required=True, help="JSON: region, buckets, tables, functions (see local.stack)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    stopped = stop_event()
    with MotoServer(port=args.port) as server:
        write_ready_file(args.ready_file, _provision(server.url, json.loads(args.spec)))
        stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
