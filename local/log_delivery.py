"""CloudWatch Logs subscription filter → Amazon Data Firehose → S3, for the local stack.

On AWS a function's log lines land in its log group; a subscription filter
(``AWS::Logs::SubscriptionFilter``) sends the events matching its pattern to a Firehose stream, which
(with the template's processors) unpacks CloudWatch Logs' gzipped envelope, keeps each event's message,
computes partition keys with a JQ query on it, buffers records per partition and writes one S3 object
per partition when the buffer is old or large enough.

Locally the function's sandboxes write to the log file of the process hosting them (``local.sandboxes``
inherits the HTTP API child's stdout). ``python -m local.log_delivery`` tails that file and does the
same steps, configured only from ``template.yaml``:

* the filter pattern of each subscription filter on the function's log group (the JSON form
  ``{ $.field = "value" }``, conditions joined by ``&&``; anything else is refused at start);
* the delivery stream's ``Prefix`` / ``ErrorOutputPrefix`` (``!{partitionKeyFromQuery:…}``,
  ``!{timestamp:…}``, ``!{firehose:error-output-type}``), ``BufferingHints``, ``CompressionFormat``,
  ``FileExtension``, and its ``MetadataExtraction`` query (the form ``{key: .field, key: .field[m:n]}``,
  which is what JQ 1.6 does with it) and ``AppendDelimiterToRecord``.

Objects are named as Firehose names them (``{prefix}{stream}-{version}-{yyyy-MM-dd-HH-mm-ss}-{uuid}{ext}``)
and written with boto3 to the local S3. ``--buffer-seconds`` (``StackConfig.capture_buffer_seconds``)
shortens the buffering interval so tests see objects within seconds; by default the template's interval
applies (300 s). Delivery is at least once, as Firehose's: a checkpoint file holds the log offset before
which every matching line is in S3; a restarted process starts there, so a line whose partition had
already been written is written again (readers deduplicate by ``prediction_id``). A record whose
partition keys cannot be computed goes under the error prefix (``processing-failed``), as on AWS. On
SIGTERM every buffer is written before the process exits. No business logic lives here.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.template import LocalResources, Template, TemplateError

log = logging.getLogger("local.log_delivery")

SUBSCRIPTION_FILTER = "AWS::Logs::SubscriptionFilter"
DELIVERY_STREAM = "AWS::KinesisFirehose::DeliveryStream"
MIB = 1024 * 1024
# Firehose's defaults when BufferingHints are absent.
DEFAULT_BUFFER_MIB = 5
DEFAULT_BUFFER_SECONDS = 300
POLL_SECONDS = 0.1
# The version Firehose puts in object names; locally a stream is never updated.
STREAM_VERSION = 1
PROCESSING_FAILED = "processing-failed"


# --- CloudWatch Logs filter patterns (the JSON form) -------------------------------------------

_CONDITION = re.compile(
    r'\s*\$\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*(=|!=)\s*("(?:[^"\\]|\\.)*"|[^\s&|)]+)\s*'
)


@dataclass(frozen=True)
class FilterPattern:
    """``{ $.a = "x" && $.b.c != "y" }``: what a JSON log event must hold for the filter to send it."""

    text: str
    conditions: tuple[tuple[tuple[str, ...], str, str], ...]

    @classmethod
    def parse(cls, text: str) -> FilterPattern:
        body = text.strip()
        if not (body.startswith("{") and body.endswith("}")):
            raise ValueError(f"only JSON filter patterns ({{ $.field = value }}) are emulated, got {text!r}")
        conditions = []
        for part in body[1:-1].split("&&"):
            found = _CONDITION.fullmatch(part)
            if found is None or "*" in found.group(3):
                raise ValueError(f"unsupported condition {part.strip()!r} in filter pattern {text!r}")
            raw = found.group(3)
            value = json.loads(raw) if raw.startswith('"') else raw
            conditions.append((tuple(found.group(1).split(".")), found.group(2), str(value)))
        return cls(text, tuple(conditions))

    def matches(self, message: str) -> bool:
        """Whether CloudWatch Logs would send this log event (non-JSON events never match a JSON pattern)."""
        if not message.startswith("{"):
            return False
        try:
            event = json.loads(message)
        except ValueError:
            return False
        for path, operator, expected in self.conditions:
            value: Any = event
            for name in path:
                value = value.get(name) if isinstance(value, dict) else None
            actual = None if value is None or isinstance(value, (dict, list)) else _text(value)
            if (actual == expected) != (operator == "="):
                return False
        return True


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


# --- Firehose's inline JQ partitioning (the form this template uses) ---------------------------

_JQ_ENTRY = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"(?:\[\s*(-?\d*)\s*:\s*(-?\d*)\s*\])?\s*"
)


class PartitionKeyError(ValueError):
    """A record whose partition keys JQ cannot compute: Firehose sends it to the error prefix."""


@dataclass(frozen=True)
class JqQuery:
    """``{city: .city, date: .time[0:10]}``: partition keys from fields, optionally string slices."""

    text: str
    keys: tuple[tuple[str, tuple[str, ...], int | None, int | None], ...]

    @classmethod
    def parse(cls, text: str) -> JqQuery:
        body = text.strip()
        if not (body.startswith("{") and body.endswith("}")):
            raise ValueError(f"only object queries ({{key: .field}}) are emulated, got {text!r}")
        keys = []
        for part in body[1:-1].split(","):
            found = _JQ_ENTRY.fullmatch(part)
            if found is None:
                raise ValueError(f"unsupported JQ entry {part.strip()!r} in {text!r}")
            start, stop = (int(found.group(i)) if found.group(i) else None for i in (3, 4))
            keys.append((found.group(1), tuple(found.group(2).split(".")), start, stop))
        return cls(text, tuple(keys))

    def evaluate(self, message: str) -> dict[str, str]:
        try:
            record = json.loads(message)
        except ValueError as error:
            raise PartitionKeyError(f"the record is not JSON: {error}") from error
        values: dict[str, str] = {}
        for name, path, start, stop in self.keys:
            value: Any = record
            for step in path:
                value = value.get(step) if isinstance(value, dict) else None
            if start is not None or stop is not None:
                if not isinstance(value, str):
                    raise PartitionKeyError(f"{name}: .{'.'.join(path)} is not a string to slice")
                value = value[start:stop]
            if value is None or isinstance(value, (dict, list)) or value == "":
                raise PartitionKeyError(f"{name}: .{'.'.join(path)} gives no value")
            values[name] = _text(value)
        return values


# --- what the template declares ----------------------------------------------------------------


@dataclass(frozen=True)
class DeliverySpec:
    """One subscription filter and the Firehose stream it feeds, resolved from the template."""

    filter_id: str
    log_group: str
    pattern: FilterPattern
    stream_name: str
    bucket: str
    prefix: str
    error_prefix: str
    buffer_bytes: int
    buffer_seconds: float
    compression: str
    extension: str
    query: JqQuery | None
    append_delimiter: bool


def function_log_group(template: Template, function_id: str, resources: LocalResources) -> str:
    """The log group a function writes to: its ``LoggingConfig.LogGroup``, else Lambda's default."""
    properties = template.resources[function_id].get("Properties") or {}
    configured = (properties.get("LoggingConfig") or {}).get("LogGroup")
    if configured is not None:
        return str(template.resolve(configured, resources, where=f"{function_id}.LoggingConfig.LogGroup"))
    return f"/aws/lambda/{template.function(function_id, resources).function_name}"


def plan(template: Template, resources: LocalResources, function_id: str) -> list[DeliverySpec]:
    """Every subscription filter on ``function_id``'s log group that feeds a Firehose stream writing to S3."""
    log_group = function_log_group(template, function_id, resources)
    specs = []
    for filter_id in template.logical_ids(SUBSCRIPTION_FILTER):
        properties = template.resources[filter_id].get("Properties") or {}
        where = f"{filter_id}.Properties"
        if str(template.resolve(properties.get("LogGroupName"), resources, where=f"{where}.LogGroupName")) != log_group:
            continue
        stream_id = _logical_id(properties.get("DestinationArn"))
        if stream_id is None or template.resources.get(stream_id, {}).get("Type") != DELIVERY_STREAM:
            raise TemplateError(f"{where}.DestinationArn: only !GetAtt <DeliveryStream>.Arn is emulated locally")
        try:
            pattern = FilterPattern.parse(str(properties.get("FilterPattern", "")))
        except ValueError as error:
            raise TemplateError(f"{where}.FilterPattern: {error}") from None
        specs.append(_stream_spec(template, resources, filter_id, log_group, pattern, stream_id))
    return specs


def _stream_spec(
    template: Template,
    resources: LocalResources,
    filter_id: str,
    log_group: str,
    pattern: FilterPattern,
    stream_id: str,
) -> DeliverySpec:
    where = f"{stream_id}.Properties"
    properties = template.resources[stream_id].get("Properties") or {}
    destination = properties.get("ExtendedS3DestinationConfiguration")
    if not destination:
        raise TemplateError(f"{where}: only ExtendedS3DestinationConfiguration is emulated locally")
    # Only what the stand-in needs (the role, IAM and the CloudWatch options mean nothing locally).
    config = {
        name: template.resolve(value, resources, where=f"{where}.ExtendedS3DestinationConfiguration.{name}")
        for name, value in destination.items()
        if name in _EMULATED_SETTINGS
    }
    name = properties.get("DeliveryStreamName")
    stream_name = (
        str(template.resolve(name, resources, where=f"{where}.DeliveryStreamName"))
        if name
        else f"{resources.stack_name}-{stream_id}"
    )
    bucket_arn = str(config["BucketARN"])
    if not bucket_arn.startswith("arn:aws:s3:::"):
        raise TemplateError(f"{where}.BucketARN: {bucket_arn!r} is not an S3 bucket ARN")
    processors = (config.get("ProcessingConfiguration") or {}).get("Processors") or []
    enabled = (config.get("ProcessingConfiguration") or {}).get("Enabled", False) in (True, "true")
    query = None
    append_delimiter = False
    for processor in processors if enabled else []:
        parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor.get("Parameters") or []}
        kind = processor.get("Type")
        if kind == "MetadataExtraction":
            try:
                query = JqQuery.parse(parameters["MetadataExtractionQuery"])
            except (KeyError, ValueError) as error:
                raise TemplateError(f"{where}: MetadataExtraction: {error}") from None
        elif kind == "AppendDelimiterToRecord":
            append_delimiter = True
        elif kind not in {"Decompression", "CloudWatchLogProcessing"}:
            # Decompression and message extraction: the local log file already holds the messages.
            raise TemplateError(f"{where}: processor {kind!r} is not emulated locally")
    hints = config.get("BufferingHints") or {}
    dynamic = (config.get("DynamicPartitioningConfiguration") or {}).get("Enabled") in (True, "true")
    if dynamic and query is None:
        raise TemplateError(f"{where}: dynamic partitioning needs a MetadataExtraction query")
    return DeliverySpec(
        filter_id=filter_id,
        log_group=log_group,
        pattern=pattern,
        stream_name=stream_name,
        bucket=bucket_arn.removeprefix("arn:aws:s3:::"),
        prefix=str(config.get("Prefix", "")),
        error_prefix=str(config.get("ErrorOutputPrefix", "")),
        buffer_bytes=int(hints.get("SizeInMBs", DEFAULT_BUFFER_MIB)) * MIB,
        buffer_seconds=float(hints.get("IntervalInSeconds", DEFAULT_BUFFER_SECONDS)),
        compression=str(config.get("CompressionFormat", "UNCOMPRESSED")),
        extension=str(config.get("FileExtension", "")),
        query=query if dynamic else None,
        append_delimiter=append_delimiter,
    )


_EMULATED_SETTINGS = frozenset(
    {
        "BucketARN",
        "Prefix",
        "ErrorOutputPrefix",
        "BufferingHints",
        "CompressionFormat",
        "FileExtension",
        "ProcessingConfiguration",
        "DynamicPartitioningConfiguration",
    }
)


def _logical_id(reference: Any) -> str | None:
    if isinstance(reference, Mapping):
        attribute = reference.get("Fn::GetAtt")
        if isinstance(attribute, list) and len(attribute) == 2 and attribute[1] == "Arn":
            return str(attribute[0])
        if isinstance(attribute, str) and attribute.endswith(".Arn"):
            return attribute[: -len(".Arn")]
    return None


# --- S3 prefixes -------------------------------------------------------------------------------

_NAMESPACE = re.compile(r"!\{([A-Za-z]+):([^}]*)\}")
_JAVA_DATE = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))


def render_prefix(
    expression: str,
    now: datetime | None = None,
    keys: Mapping[str, str] | None = None,
    error_type: str | None = None,
) -> str:
    """A Firehose prefix expression with its ``!{namespace:value}`` parts filled in (``now`` in UTC)."""

    def fill(match: re.Match[str]) -> str:
        namespace, argument = match.groups()
        if namespace == "partitionKeyFromQuery" and keys is not None and argument in keys:
            return keys[argument]
        if namespace == "timestamp" and now is not None:
            pattern = argument
            for java, strftime in _JAVA_DATE:
                pattern = pattern.replace(java, strftime)
            return now.strftime(pattern)
        if namespace == "firehose" and argument == "error-output-type" and error_type is not None:
            return error_type
        raise TemplateError(f"prefix {expression!r}: cannot fill !{{{namespace}:{argument}}} here")

    return _NAMESPACE.sub(fill, expression)


# --- buffering and delivery --------------------------------------------------------------------


@dataclass
class _Buffer:
    prefix: str
    opened: float
    first_offset: int
    records: list[bytes] = field(default_factory=list)
    size: int = 0


class Delivery:
    """One stream's per-partition buffers; ``put_object(bucket, key, body)`` writes an object."""

    def __init__(
        self,
        spec: DeliverySpec,
        put_object: Callable[[str, str, bytes], None],
        clock: Callable[[], float] = time.time,
        buffer_seconds: float | None = None,
    ) -> None:
        self.spec = spec
        self.put_object = put_object
        self.clock = clock
        self.buffer_seconds = spec.buffer_seconds if buffer_seconds is None else buffer_seconds
        self.buffers: dict[str, _Buffer] = {}
        self.delivered_objects = 0

    def offer(self, message: str, offset: int) -> bool:
        """Buffer ``message`` (starting at log ``offset``) if the filter matches; True if it did."""
        if not self.spec.pattern.matches(message):
            return False
        now = self.clock()
        moment = datetime.fromtimestamp(now, tz=UTC)
        record = message + "\n" if self.spec.append_delimiter else message
        try:
            keys = self.spec.query.evaluate(message) if self.spec.query else None
            prefix = render_prefix(self.spec.prefix, moment, keys=keys)
        except PartitionKeyError as error:
            prefix = render_prefix(self.spec.error_prefix, moment, error_type=PROCESSING_FAILED)
            record = _error_record(message, error, now) + "\n"
        buffer = self.buffers.get(prefix)
        if buffer is None:
            buffer = self.buffers[prefix] = _Buffer(prefix, now, offset)
        buffer.records.append(record.encode("utf-8"))
        buffer.size += len(buffer.records[-1])
        if buffer.size >= self.spec.buffer_bytes:
            self._deliver(buffer)
        return True

    def flush_due(self) -> int:
        """Write every buffer older than the interval; the number of objects written."""
        now = self.clock()
        due = [b for b in self.buffers.values() if now - b.opened >= self.buffer_seconds]
        return sum(self._deliver(buffer) for buffer in due)

    def flush_all(self) -> int:
        return sum(self._deliver(buffer) for buffer in list(self.buffers.values()))

    def first_pending_offset(self) -> int | None:
        """The log offset of the oldest record not yet in S3 (None: everything offered is delivered)."""
        return min((b.first_offset for b in self.buffers.values()), default=None)

    def _deliver(self, buffer: _Buffer) -> int:
        body = b"".join(buffer.records)
        if self.spec.compression == "GZIP":
            body = gzip.compress(body, mtime=0)
        moment = datetime.fromtimestamp(self.clock(), tz=UTC)
        key = (
            f"{buffer.prefix}{self.spec.stream_name}-{STREAM_VERSION}-{moment:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
            f"{self.spec.extension}"
        )
        try:
            self.put_object(self.spec.bucket, key, body)
        except Exception as error:  # S3 down (moto restarting): keep the buffer, retry on the next poll
            log.warning("delivery of %s to s3://%s failed, retrying: %s", key, self.spec.bucket, error)
            return 0
        del self.buffers[buffer.prefix]
        self.delivered_objects += 1
        log.info("delivered %d record(s) to s3://%s/%s", len(buffer.records), self.spec.bucket, key)
        return 1


def _error_record(message: str, error: Exception, now: float) -> str:
    """The shape Firehose writes under the error prefix (raw data base64-encoded)."""
    return json.dumps(
        {
            "attemptsMade": 1,
            "arrivalTimestamp": int(now * 1000),
            "errorCode": "DynamicPartitioning.MetadataExtractionFailed",
            "errorMessage": str(error),
            "attemptEndingTimestamp": int(now * 1000),
            "rawData": base64.b64encode(message.encode("utf-8")).decode("ascii"),
        },
        separators=(",", ":"),
    )


# --- tailing the log file ----------------------------------------------------------------------


class LogTail:
    """Complete lines appended to ``path`` from ``offset`` on (a partial last line waits for its newline)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._partial = b""

    def read(self) -> list[tuple[int, str]]:
        """(start offset, line) of each new complete line."""
        try:
            with self.path.open("rb") as source:
                source.seek(self.offset + len(self._partial))
                chunk = source.read()
        except FileNotFoundError:
            return []
        data = self._partial + chunk
        lines = []
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            lines.append((self.offset + start, data[start:end].decode("utf-8", "replace")))
            start = end + 1
        self.offset += start
        self._partial = data[start:]
        return lines


def pump(tail: LogTail, deliveries: Sequence[Delivery]) -> int:
    """One poll: offer new lines to every delivery, write the buffers that are due; lines read."""
    lines = tail.read()
    for offset, line in lines:
        for delivery in deliveries:
            delivery.offer(line, offset)
    for delivery in deliveries:
        delivery.flush_due()
    return len(lines)


def safe_offset(tail: LogTail, deliveries: Sequence[Delivery]) -> int:
    """The log offset before which every matching line is in S3: where a restart resumes."""
    pending = [offset for d in deliveries if (offset := d.first_pending_offset()) is not None]
    return min([*pending, tail.offset])


def main(argv: list[str] | None = None) -> int:
    from local import ready
    from local.process import stop_event

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--function", required=True, help="logical id of the function whose log lines these are")
    parser.add_argument("--source", type=Path, required=True, help="the log file its sandboxes write to")
    parser.add_argument("--resources", default="{}", help="LocalResources as JSON")
    parser.add_argument("--template", type=Path, default=None)
    parser.add_argument("--checkpoint", type=Path, required=True, help="where the resume offset is kept")
    parser.add_argument("--buffer-seconds", type=float, default=None, help="instead of the template's interval")
    parser.add_argument("--ready-file", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    import boto3

    resources = LocalResources(**json.loads(args.resources))
    specs = plan(Template.load(args.template), resources, args.function)
    s3 = boto3.client("s3", region_name=resources.region)

    def put_object(bucket: str, key: str, body: bytes) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    deliveries = [Delivery(spec, put_object, buffer_seconds=args.buffer_seconds) for spec in specs]
    start = int(args.checkpoint.read_text()) if args.checkpoint.is_file() else 0
    tail = LogTail(args.source, start)
    stopped = stop_event()
    if args.ready_file:
        ready.write(args.ready_file, ready.LogDeliveryReady(function=args.function, deliveries=len(deliveries)))
    log.info(
        "delivering %s from %s (offset %d): %s",
        args.function,
        args.source,
        start,
        ", ".join(f"{d.spec.filter_id} -> {d.spec.stream_name} every {d.buffer_seconds:g} s" for d in deliveries),
    )
    checkpoint = start
    while True:
        finished = stopped.is_set()
        pump(tail, deliveries)
        if finished:
            for delivery in deliveries:
                delivery.flush_all()
        offset = safe_offset(tail, deliveries)
        if offset != checkpoint:
            _write_offset(args.checkpoint, offset)
            checkpoint = offset
        if finished:
            return 0
        stopped.wait(POLL_SECONDS)


def _write_offset(path: Path, offset: int) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(str(offset))
    partial.replace(path)


if __name__ == "__main__":
    sys.exit(main())
