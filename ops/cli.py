"""``python -m ops``: the operator's view of the model registry.

    python -m ops cities                          live version per city
    python -m ops versions CITY                   every version with status, AE p50 and reason
    python -m ops promote CITY VERSION            make VERSION live now (rollback or roll forward)
    python -m ops publish CITY model.tar.gz       upload as a training output; the S3 trigger does the rest
    python -m ops sync CITY model.tar.gz          publish, then run model-sync's logic right here (exit 1 if rejected)
    python -m ops status                          live versions, failed model-sync events, alarm states
    python -m ops failed                          model-sync events that exhausted their attempts, with the error
    python -m ops redrive [ID ...]                run model-sync again on them (ops/failures.py)
    python -m ops plan --models N --rps R         instances and monthly cost per serving option (ops/plan.py)
    python -m ops preflight                       would `make deploy` work here? each problem with its fix
    python -m ops outputs [KEY]                   a deployed stack's outputs (--stack; default samconfig's)
    python -m ops rollout status [CITY]           rollouts in progress; a city's rollout, evidence and history
    python -m ops rollout start|weight|promote|abort|policy CITY ...   progressive delivery (ops/rollouts.py)

Bucket, prefix, table, failure queue and alarm prefix come from --bucket/--prefix/--table/--queue-url/
--alarm-prefix, else ARTIFACT_BUCKET/MODEL_PREFIX/REGISTRY_TABLE/MODEL_SYNC_FAILURE_QUEUE_URL/
ALARM_NAME_PREFIX, else the outputs of ``--stack NAME`` (a deployed stack), else ``.local/stack.json``
(written by ``make up``); ``plan`` needs none of them and calls no AWS API. ``preflight`` and ``outputs``
take the stack name from ``--stack``, else samconfig.toml (ops/preflight.py, ops/stack.py). Add ``--json``
for scripts. ``--region`` and ``--profile`` apply to every AWS call (as exporting ``AWS_DEFAULT_REGION`` /
``AWS_PROFILE`` would). Global options go before or after the command: ``ops --json cities`` = ``ops cities
--json``.

``sync`` does not bypass the S3 trigger: the upload is a training output like ``publish``'s, so on AWS
(and on the local stack) model-sync runs on it as well. ``sync`` runs the same logic at once, here, with
``--gate``; whichever run comes second finds a duplicate. It prints the version's status in the registry
afterwards and exits 1 when the artifact is rejected, by either run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from house_prices.artifacts import DEFAULT_MAX_UNPACKED_BYTES, inspect_artifact
from house_prices.errors import DependencyFailure, DomainError, InvalidArtifact, UnknownCity, UnknownVersion
from house_prices.naming import job_name, validate_city, validate_job, validate_version
from house_prices.observability import logger
from house_prices.registry import ModelRegistry
from house_prices.settings import process_environ
from model_sync.gate import recorded_ae_p50
from model_sync.settings import DEFAULT_QUALITY_GATE
from model_sync.wiring import assemble
from ops import failures, plan, preflight, rollouts, tables
from ops import quality as live_quality
from ops import stack as stacks
from ops.config import ConfigError, OpsConfig, resolve
from ops.status import MAX_PEEKED_MESSAGES, Status, alarm_states, failed_events

# Accepted before the command and after it (`ops --json cities` and `ops cities --json`).
GLOBAL_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--bucket", {"help": "artifact bucket [ARTIFACT_BUCKET]"}),
    ("--prefix", {"help": "key prefix [MODEL_PREFIX, default DEMO_MME_SCIKIT_V1]"}),
    ("--table", {"help": "registry table [REGISTRY_TABLE]"}),
    ("--stack-file", {"type": Path, "help": "local stack description (default .local/stack.json)"}),
    ("--stack", {"help": "deployed CloudFormation stack whose outputs name the resources"}),
    ("--queue-url", {"help": "model-sync failure queue [MODEL_SYNC_FAILURE_QUEUE_URL]"}),
    ("--alarm-prefix", {"help": "alarm name prefix [ALARM_NAME_PREFIX, default '<stack>-']"}),
    ("--region", {"help": "AWS region of every call [AWS_DEFAULT_REGION, the profile's]"}),
    ("--profile", {"help": "named AWS profile for credentials and region [AWS_PROFILE]"}),
    ("--json", {"action": "store_true", "help": "print JSON instead of tables"}),
)
SYNC_HELP = (
    "upload a model.tar.gz as a training output and run model-sync on it here, now, with --gate "
    "(the upload also fires the S3 trigger: whichever runs second finds a duplicate); exit 1 if rejected"
)


def _add_global_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """The global options; after a command they default to SUPPRESS, so they only override what was given."""
    group = parser.add_argument_group("global options (before or after the command)") if after_command else parser
    for flag, options in GLOBAL_OPTIONS:
        # A command with its own flag of that name (preflight's and outputs' --region) keeps it: same dest.
        with contextlib.suppress(argparse.ArgumentError):
            group.add_argument(flag, **({**options, "default": argparse.SUPPRESS} if after_command else options))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops", description=__doc__.split("\n\n")[0])
    _add_global_options(parser, after_command=False)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("cities", help="live version per city")
    status = commands.add_parser("status", help="live versions, failed model-sync events and alarm states")
    status.add_argument("--peek", type=int, default=MAX_PEEKED_MESSAGES, help="failed events to show")
    versions = commands.add_parser("versions", help="all versions of a city, newest first")
    versions.add_argument("city")

    promote = commands.add_parser("promote", help="make a version live now (rollback / roll forward)")
    promote.add_argument("city")
    promote.add_argument("version")
    promote.add_argument(
        "--expected-live",
        help="refuse unless this is still the live version (default: the live version read just before)",
    )

    for name, text in (
        ("publish", "upload a model.tar.gz as a training output (the S3 event syncs it)"),
        ("sync", SYNC_HELP),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("city")
        command.add_argument("path", type=Path)
        command.add_argument("--job", help="training job name (default: generated from city and time)")
        command.add_argument(
            "--max-unpacked-bytes", type=int, default=DEFAULT_MAX_UNPACKED_BYTES, help="reject larger artifacts"
        )
        if name == "sync":
            command.add_argument("--gate", help=f"quality gate [QUALITY_GATE, default {DEFAULT_QUALITY_GATE}]")
    failures.add_commands(commands)
    plan.add_command(commands)
    preflight.add_command(commands)
    stacks.add_command(commands)
    live_quality.add_command(commands)
    nested = rollouts.add_command(commands)
    for command in {*commands.choices.values(), *nested}:
        _add_global_options(command, after_command=True)
    return parser


class Ops:
    def __init__(self, config: OpsConfig) -> None:
        self.config = config

    def registry(self) -> ModelRegistry:
        table = self.config.require_table()
        return ModelRegistry(boto3.client("dynamodb"), table)

    def rollout(self, args: argparse.Namespace, environ: Mapping[str, str]) -> rollouts.Report:
        def quality_table() -> str:
            outputs = _stack_outputs(args.stack, args.region) if args.stack else None
            return live_quality.table_name(args, self.config, environ, outputs)

        return rollouts.run(args, self.registry(), boto3.client("dynamodb"), quality_table, environ)

    def status(self, peek: int) -> Status:
        return Status(
            live=self.cities(),
            failed_events=failed_events(boto3.client("sqs"), self.config.failure_queue_url, peek),
            alarms=alarm_states(boto3.client("cloudwatch"), self.config.alarm_prefix),
        )

    def cities(self) -> list[dict[str, Any]]:
        return [asdict(model) for model in self.registry().live_models()]

    def versions(self, city: str) -> list[dict[str, Any]]:
        registry = self.registry()
        versions = registry.versions(validate_city(city))
        if not versions:
            raise UnknownCity(city)
        return [{**v.as_dict(), "ae_p50": recorded_ae_p50(v.metrics)} for v in versions]

    def promote(self, city: str, version: str, expected_live: str | None) -> dict[str, Any]:
        registry = self.registry()
        validate_city(city)
        validate_version(version)
        if expected_live is None:
            live = registry.find_live(city)
            expected_live = live.version if live else None
        live = registry.promote(
            city, version, force=True, expected_live=expected_live, reason=f"promoted by operator (was {expected_live})"
        )
        return {**asdict(live), "previous_version": expected_live}

    def publish(self, city: str, path: Path, job: str | None, max_unpacked_bytes: int) -> dict[str, Any]:
        bucket = self.config.require_bucket()
        validate_city(city)
        job = validate_job(job) if job else job_name(city)
        # Fail on the operator's machine, not in the Lambda, for an artifact that would be rejected.
        try:
            with path.open("rb") as handle:
                report = inspect_artifact(handle, max_unpacked_bytes=max_unpacked_bytes)
        except OSError as error:
            raise InvalidArtifact(f"cannot read {path}: {error}") from error
        key = self.config.layout.training_output_key(city, job)
        upload_artifact(boto3.client("s3"), path, bucket, key)
        return {"bucket": bucket, "key": key, "sha256": report.sha256, "size_bytes": report.size_bytes}

    def sync(self, city: str, path: Path, job: str | None, max_unpacked_bytes: int, gate: str) -> dict[str, Any]:
        """Publish, then run model-sync on the upload here; ``status`` is the version's state in the registry
        afterwards, whoever decided it (this run, or the S3 trigger's run if that came first)."""
        published = self.publish(city, path, job, max_unpacked_bytes)
        registry = self.registry()
        service = assemble(
            self.config.sync_settings(gate, max_unpacked_bytes, bucket=published["bucket"]),
            boto3.client("s3"),
            boto3.client("dynamodb"),
        )
        result = service.sync_training_output(published["bucket"], published["key"])
        status = None
        if result.version is not None:
            with contextlib.suppress(UnknownVersion):  # a rejection that recorded nothing (a key conflict)
                status = registry.version(city, result.version).status
        return {**published, **result.as_dict(), "status": status}


def sync_rejected(result: Mapping[str, Any]) -> bool:
    """This run rejected the artifact, or found it already rejected by the trigger's run."""
    return result["action"] == "rejected" or result.get("status") == "rejected"


def upload_artifact(s3_client: Any, path: Path, bucket: str, key: str) -> None:
    """Upload like a training job's output (the Lambda never uploads, so this lives with the operator)."""
    try:
        s3_client.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": "application/gzip"})
    except (ClientError, BotoCoreError, S3UploadFailedError) as error:
        raise DependencyFailure(f"S3 upload {path} -> s3://{bucket}/{key} failed: {error}") from error


@contextlib.contextmanager
def _logs_to_stderr() -> Iterator[None]:
    """Keep stdout for results (tables or --json); model-sync's structured logs go to stderr."""
    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        yield
        return
    previous = handler.setStream(sys.stderr)
    try:
        yield
    finally:
        handler.setStream(previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _logs_to_stderr():
            return _run(args)
    except BrokenPipeError:
        # `ops cities | head`: the reader left early. No traceback; stdout goes nowhere from now on, so the
        # interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run(args: argparse.Namespace) -> int:
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    environ = process_environ()
    exit_code = 0
    columns: Sequence[str]
    result: Any
    try:
        _use_session_flags(args, environ)
        if args.command == plan.COMMAND:  # arithmetic on ops/serving_figures.json: no resources to resolve
            sizing = plan.run(args)
            if args.json:
                print(json.dumps(sizing.as_dict(), indent=2))
            else:
                for part in plan.renderables(sizing):
                    out.print(part)
            return 0
        if args.command == preflight.COMMAND:  # the stack about to be deployed, not a deployed one's resources
            checked, code = preflight.run(args, environ, stack=args.stack)
            preflight.print_report(checked, args.json)
            return code
        if args.command == stacks.OUTPUTS_COMMAND:
            _print_outputs(stacks.run(args, environ, args.stack), args.key, args.json)
            return 0
        ops = Ops(
            resolve(
                args.bucket,
                args.prefix,
                args.table,
                args.stack_file,
                environ,
                queue_url=args.queue_url,
                alarm_prefix=args.alarm_prefix,
                stack_outputs=_stack_outputs(args.stack, args.region) if args.stack else None,
            )
        )
        if args.command == "status":
            report = ops.status(args.peek)
            if args.json:
                print(json.dumps(report.as_dict(), indent=2, default=str))
            else:
                _print_status(out, report)
            return 0
        if args.command == rollouts.COMMAND:
            done = ops.rollout(args, environ)
            if args.json:
                print(json.dumps(done.result, indent=2, default=str))
            else:
                rollouts.print_report(out, done)
            return 0
        if args.command in failures.COMMANDS:
            result, rows, columns, title, exit_code = failures.run(args, ops.config)
        elif args.command == live_quality.COMMAND:
            table = live_quality.table_name(
                args, ops.config, environ, _stack_outputs(args.stack, args.region) if args.stack else None
            )
            if args.drift:
                drifting = live_quality.drifting(live_quality.read_items(boto3.client("dynamodb"), table), args.top)
                rows = result = drifting
                columns, title = live_quality.DRIFT_COLUMNS, f"Drifting cities, worst first ({table})"
            else:
                summaries = live_quality.worst_first(
                    live_quality.read_all(boto3.client("dynamodb"), table), args.min_count, args.top
                )
                rows = result = live_quality.rows(summaries)
                columns, title = live_quality.COLUMNS, f"Live quality, worst first ({table})"
        elif args.command == "cities":
            rows = ops.cities()
            columns = ("city", "version", "target_model", "promoted_at")
            result = rows
            title = "Live models"
        elif args.command == "versions":
            rows = ops.versions(args.city)
            columns = ("version", "status", "ae_p50", "created_at", "reason")
            result, title = rows, f"Versions of {args.city}"
        elif args.command == "promote":
            result = ops.promote(args.city, args.version, args.expected_live)
            rows, columns, title = [result], ("city", "version", "previous_version", "promoted_at"), "Promoted"
        elif args.command == "publish":
            result = ops.publish(args.city, args.path, args.job, args.max_unpacked_bytes)
            rows, columns, title = [result], ("bucket", "key", "sha256"), "Published"
        else:
            gate = args.gate or ops.config.quality_gate or DEFAULT_QUALITY_GATE
            result = ops.sync(args.city, args.path, args.job, args.max_unpacked_bytes, gate)
            rows, columns, title = [result], ("city", "version", "action", "status", "reason"), "Synced"
    except (DomainError, ConfigError, ValueError, BotoCoreError, ClientError) as error:
        message = error.message if isinstance(error, DomainError) else str(error)
        if args.json:
            print(json.dumps({"error": type(error).__name__, "message": message}), file=sys.stderr)
        else:
            err.print(f"error: {message}", style="red", markup=False, highlight=False)
        return 1
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        tables.print_rows(out, rows, columns, title)
    return 1 if exit_code or (args.command == "sync" and sync_rejected(result)) else 0


def _use_session_flags(args: argparse.Namespace, environ: MutableMapping[str, str]) -> None:
    """``--profile``/``--region`` for every AWS session of this run, as exporting the variables would be.

    Set before anything reads the environment, so they also beat the local stack file's region.
    """
    if args.profile:
        environ.pop("AWS_DEFAULT_PROFILE", None)  # botocore reads it before AWS_PROFILE
        environ["AWS_PROFILE"] = args.profile
    if args.region:
        environ["AWS_DEFAULT_REGION"] = args.region
    if args.profile or args.region:
        boto3.setup_default_session()  # a session made earlier in this process has cached its credentials


def _stack_outputs(stack_name: str, region: str | None) -> dict[str, str]:
    return dict(stacks.deployed_stack(stack_name, region=region).outputs)


def _print_outputs(stack: stacks.DeployedStack, key: str | None, as_json: bool) -> None:
    """Plain lines, never wrapped or cut: the values are ARNs and URLs to copy."""
    if key:
        print(stack.output(key))
    elif as_json:
        print(json.dumps({"stack": stack.name, "region": stack.region, "outputs": dict(stack.outputs)}, indent=2))
    else:
        width = max((len(name) for name in stack.outputs), default=0)
        print(f"Outputs of {stack.name} ({stack.region}):")
        for name, value in sorted(stack.outputs.items()):
            print(f"  {name:<{width}}  {value}")


def _print_status(out: Console, report: Status) -> None:
    tables.print_rows(out, list(report.live), ("city", "version", "promoted_at"), "Live models")
    events = report.failed_events
    if events.unavailable:
        tables.line(out, f"Failed model-sync events: {events.unavailable}")
    elif not events.approximate_count and not events.peeked:
        tables.line(out, f"Failed model-sync events: none (queue {events.queue_url})")
    else:
        rows = [asdict(event) for event in events.peeked]
        title = f"Failed model-sync events: {events.approximate_count} waiting in {events.queue_url}"
        tables.print_rows(out, rows, ("sent_at", "key", "condition", "error", "receive_count"), title)
    alarms = report.alarms
    if alarms.unavailable:
        tables.line(out, f"Alarms: {alarms.unavailable}")
    else:
        rows = [asdict(alarm) for alarm in alarms.alarms]
        tables.print_rows(out, rows, ("name", "state", "updated_at", "reason"), f"Alarms {alarms.prefix}*")
    verdict = "needs attention" if report.needs_attention else "nothing waiting, no alarm firing"
    tables.line(out, f"Status: {verdict}")
