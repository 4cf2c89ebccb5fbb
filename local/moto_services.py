"""Local S3 (with event notifications), SQS and DynamoDB: one moto server on 127.0.0.1.

On AWS, S3 invokes the model-sync Lambda asynchronously for every training output that matches
the function's S3 event filter. Locally, moto delivers the same S3 event to an SQS queue (moto
supports S3 → SQS notifications in server mode) and :mod:`local.dispatcher` plays Lambda's
asynchronous invoker. The notification's prefix/suffix filter, the bucket and the retry count
come from ``template.yaml``; nothing here is specific to this project's keys.

``python -m local.moto_services --ready-file F [--state-dir D] [--fd N]`` serves until SIGTERM/SIGINT; the
stack runs it as a child. With ``--state-dir`` every change is journaled there (:mod:`local.journal`)
and replayed at the next start, so a crash of this process, or a new ``make up``, loses nothing.
With ``--fd`` it serves on a socket the supervisor bound, so a restarted moto keeps its URL.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from local import moto_transactions
from local.journal import INTERNAL_HEADER, Journal, JournalingMiddleware, StartupGate, install_sqs_hooks, replay
from local.process import LOCAL_HOST
from local.ready import EventQueue, MotoReady
from local.template import S3Trigger, Template

# The dispatcher extends visibility on retries; this is only the first attempt's budget.
_MIN_VISIBILITY_SECONDS = 30
# Lambda keeps an async event up to 6 h; its on-failure queue keeps records as long as SQS allows.
_ON_FAILURE_RETENTION_SECONDS = 1209600


class MotoServer:
    """moto's WSGI app on 127.0.0.1: an OS-assigned port, or an inherited listening socket (``fd``).

    With a ``journal`` every successful write goes through :class:`local.journal.JournalingMiddleware`.
    """

    def __init__(self, host: str = LOCAL_HOST, port: int = 0, fd: int | None = None, journal: Journal | None = None):
        self._host, self._port, self._fd, self._journal = host, port, fd, journal
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._gate: StartupGate | None = None
        self.url = ""

    def start(self, gated: bool = False) -> str:
        """Serve; with ``gated`` only start-up requests are answered until :meth:`open`."""
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        moto_transactions.install()
        app: Any = DomainDispatcherApplication(create_backend_app)
        if self._journal is not None:
            app = JournalingMiddleware(app, self._journal)
        self._gate = StartupGate(app)
        if not gated:
            self._gate.open()
        app = self._gate
        self._server = make_server(
            self._host, self._port, app, threaded=True, request_handler=MotoRequestHandler, fd=self._fd
        )
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()
        return self.url

    def open(self) -> None:
        if self._gate is not None:
            self._gate.open()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def client(service: str, endpoint_url: str, region: str) -> Any:
    """A boto3 client for the local services, with fake credentials and no retries to hide errors."""
    # The service is chosen at run time; boto3-stubs only types literal service names.
    created = boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"mode": "standard", "max_attempts": 2}),
    )
    # Start-up requests pass moto's StartupGate (a no-op once the server is open).
    created.meta.events.register("before-sign", _mark_internal)
    return created


def _mark_internal(request: Any, **_: Any) -> None:
    request.headers[INTERNAL_HEADER] = "provision"


def create_bucket(endpoint_url: str, region: str, bucket: str) -> None:
    s3 = client("s3", endpoint_url, region)
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    with suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(**kwargs)


def create_table(dynamodb_client: Any, table: str, template: Template | None = None) -> None:
    """Create ``table`` as template.yaml declares it (on AWS, CloudFormation creates it from the same lines).

    The stack names each table ``{stack}-{LogicalId}``; a name that matches none is the registry's
    (``RegistryTable``, or the only table of a template with one).
    """
    dynamodb_client.create_table(TableName=table, **_table_definition(table, template or Template.load()))


def add_missing_indexes(dynamodb_client: Any, table: str, template: Template | None = None) -> list[str]:
    """Create the template's global secondary indexes that an existing ``table`` lacks; returns their names.

    A stack kept in ``.local/state`` from before an index was declared gets it, as a CloudFormation
    update would add it (one ``UpdateTable`` per index: DynamoDB creates one at a time).
    """
    definition = _table_definition(table, template or Template.load())
    described = dynamodb_client.describe_table(TableName=table)["Table"]
    present = {index["IndexName"] for index in described.get("GlobalSecondaryIndexes", [])}
    added = []
    for index in definition.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] in present:
            continue
        create = {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
        if "ProvisionedThroughput" in index:
            create["ProvisionedThroughput"] = index["ProvisionedThroughput"]
        dynamodb_client.update_table(
            TableName=table,
            AttributeDefinitions=definition["AttributeDefinitions"],
            GlobalSecondaryIndexUpdates=[{"Create": create}],
        )
        added.append(index["IndexName"])
    return added


def _table_definition(table: str, template: Template) -> dict[str, Any]:
    declared = template.logical_ids("AWS::DynamoDB::Table")
    matching = [logical for logical in declared if table.endswith(f"-{logical}")] or (
        declared if len(declared) == 1 else [logical for logical in declared if logical == "RegistryTable"]
    )
    if len(matching) != 1:
        raise ValueError(f"cannot tell which of the template's tables ({', '.join(declared)}) {table!r} is")
    return dict(template.table_definition(matching[0]))


def create_registry_table(endpoint_url: str, region: str, table: str) -> None:
    dynamodb = client("dynamodb", endpoint_url, region)
    try:
        create_table(dynamodb, table)
    except dynamodb.exceptions.ResourceInUseException:
        add_missing_indexes(dynamodb, table)


def create_event_queue(
    endpoint_url: str,
    region: str,
    function_id: str,
    queue_name: str,
    max_attempts: int,
    function_timeout_seconds: int,
    on_failure_queue_name: str | None = None,
    visibility_timeout_seconds: int | None = None,
) -> EventQueue:
    """The event queue, plus the OnFailure queue the dispatcher sends Lambda's invocation records to.

    No redrive policy: as on AWS, it is the invoker (the dispatcher) that counts attempts and
    writes a record carrying the error, not SQS moving the bare event.
    """
    sqs = client("sqs", endpoint_url, region)
    on_failure_url = ""
    if on_failure_queue_name:
        on_failure_url = sqs.create_queue(
            QueueName=on_failure_queue_name,
            Attributes={"MessageRetentionPeriod": str(_ON_FAILURE_RETENTION_SECONDS)},
        )["QueueUrl"]
    queue_url = sqs.create_queue(
        QueueName=queue_name,
        # A message in flight must outlive the function's own timeout, as Lambda requires of SQS sources.
        Attributes={
            "VisibilityTimeout": str(
                visibility_timeout_seconds or max(_MIN_VISIBILITY_SECONDS, function_timeout_seconds + 5)
            )
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return EventQueue(function_id, queue_url, queue_arn, on_failure_url, max_attempts)


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


def _provision(url: str, spec: dict[str, Any]) -> tuple[list[EventQueue], list[tuple[S3Trigger, EventQueue]]]:
    """Create what ``spec`` (built by local.stack from the template) describes; return queue facts."""
    region = spec["region"]
    for bucket in spec["buckets"]:
        create_bucket(url, region, bucket)
    for table in spec["tables"]:
        create_registry_table(url, region, table)
    queues: list[EventQueue] = []
    subscriptions: list[tuple[S3Trigger, EventQueue]] = []
    for function in spec["functions"]:
        queue = create_event_queue(
            url,
            region,
            function["function_id"],
            function["queue_name"],
            function["max_attempts"],
            function["timeout"],
            function.get("on_failure_queue_name"),
            function.get("visibility_timeout"),
        )
        queues.append(queue)
        subscriptions.extend((S3Trigger(**trigger), queue) for trigger in function["triggers"])
    sqs = client("sqs", url, region)
    for name in spec.get("queues", []):
        sqs.create_queue(QueueName=name)
    return queues, subscriptions


def serve(
    spec: dict[str, Any], state_dir: Path | None, port: int = 0, fd: int | None = None
) -> tuple[MotoServer, Journal | None, MotoReady]:
    """Start moto, create the template's resources, replay the journal, then subscribe the events.

    The order matters: replayed uploads must not fire S3 events again, so notifications come last;
    queues must exist before their journaled messages are put back. Returns (server, ready facts).
    """
    journal = Journal(state_dir) if state_dir is not None else None
    if journal is not None:
        journal.acquire()
        install_sqs_hooks(journal)
    server = MotoServer(port=port, fd=fd, journal=journal)
    server.start(gated=True)
    queues, subscriptions = _provision(server.url, spec)
    replayed = replay(journal, server.url).as_dict() if journal is not None else None
    subscribe(server.url, spec["region"], subscriptions)
    server.open()
    return server, journal, MotoReady(endpoint_url=server.url, queues=tuple(queues), replayed=replayed)


def main(argv: list[str] | None = None) -> int:
    from local import ready
    from local.process import stop_event

    parser = argparse.ArgumentParser(description="moto server (S3/SQS/DynamoDB) for the local stack")
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--spec", required=True, help="JSON: region, buckets, tables, functions (see local.stack)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fd", type=int, help="serve on this inherited listening socket (keeps the URL on restart)")
    parser.add_argument("--state-dir", type=Path, help="journal every change here and replay it at start")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # One line per request (a dispatcher long-polls every second) would drown the log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stopped = stop_event()
    server, journal, facts = serve(json.loads(args.spec), args.state_dir, args.port, args.fd)
    try:
        if facts.replayed is not None:
            logging.getLogger("local.moto_services").info("state restored from %s: %s", args.state_dir, facts.replayed)
        ready.write(args.ready_file, facts)
        stopped.wait()
    finally:
        server.stop()
        if journal is not None:
            journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
