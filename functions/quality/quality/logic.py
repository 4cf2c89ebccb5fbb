"""Join late labels to their captured predictions and count each once: free of boto3 and of the environment.

A label names its prediction by id (the id gives the city and the UTC day, so the one capture partition
to read) or by (city, ``house_id``). Per label:

* **joined**: the prediction was found in its partition; the label's error is added to the (city,
  version) aggregate and the label is claimed in the ledger *in one transaction* (``QualityStore``),
  so a label is counted exactly once whatever is redelivered;
* **duplicate**: the ledger already holds the label from another source (a resend, another file);
* **redelivered**: the ledger holds it from this very source (a retried queue message): nothing to do;
* **pending**: not in its partition yet while the prediction is younger than ``capture_wait``
  (Firehose buffers up to ~1.5 × its interval): the source is retried later by the queue;
* **unknown**: not found after that, or named by (city, ``house_id``), which needs the house's
  prediction day and is not joined yet (docs/quality.md).

Partitions are read once per invocation (``JoinCache``): a queue batch or a label file with many
labels of the same city and day reads that day's objects once.

Capture objects (the S3 event on ``captures/``) feed drift (``house_prices.drift``): each object's
predictions are binned per (city, version) by that version's reference bins (from the registry, cached
per invocation) and ADDed with one update per (city, version), claimed in the ledger per object key in
the same transaction (S3 events are at least once); then each touched version's drift report is
recomputed and saved, and the (city, version) pairs that start or stop drifting are counted.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Protocol
from urllib.parse import unquote_plus

from house_prices import drift
from house_prices.captures import CapturedPrediction
from house_prices.errors import InvalidInput
from house_prices.ids import parse_prediction_id
from house_prices.labels import Label, parse_label_file, parse_label_message
from house_prices.live_quality import Aggregate
from house_prices.observability import logger

# Labels per message when a file's pending labels are requeued (~130 bytes each; SQS takes 256 KiB).
REQUEUE_CHUNK = 1000


class Outcome(Enum):
    JOINED = "joined"
    DUPLICATE = "duplicate"
    REDELIVERED = "redelivered"
    PENDING = "pending"
    UNKNOWN = "unknown"


class Recorded(Enum):
    """What the store did with one label's transaction."""

    COUNTED = "counted"
    DUPLICATE = "duplicate"  # claimed earlier from another source
    REDELIVERED = "redelivered"  # claimed earlier from this source


class CaptureSource(Protocol):
    def partition(self, city: str, day: str) -> Iterable[CapturedPrediction]: ...


class OfflineFigures(Protocol):
    def ae_p50(self, city: str, version: str) -> float | None: ...


class LabelQueue(Protocol):
    """The feedback queue: labels of a file whose predictions are not delivered yet wait there."""

    def send(self, labels: Sequence[Label]) -> None: ...


class LabelFiles(Protocol):
    def read(self, bucket: str, key: str) -> tuple[bytes, str] | None: ...


class QualityStore(Protocol):
    def record(
        self,
        *,
        label: Label,
        source: str,
        prediction: CapturedPrediction,
        aggregate: Aggregate,
        offline_ae_p50: float | None,
        expires_at: int,
    ) -> Recorded: ...


class ReferenceSource(Protocol):
    def references(self, city: str, version: str) -> Mapping[str, drift.Reference]: ...


class CaptureObjects(Protocol):
    def read_object(self, bucket: str, key: str) -> tuple[list[CapturedPrediction], str] | None: ...


class DriftStore(Protocol):
    def record_captures(
        self, *, ledger_key: str, source: str, increments: Mapping[tuple[str, str], Mapping[str, int]], expires_at: int
    ) -> Recorded: ...

    def live_item(self, city: str, version: str) -> Mapping[str, Any]: ...

    def save_report(
        self, city: str, version: str, report: Mapping[str, Any], seen_count: int, was_drifting: bool
    ) -> bool: ...


# A capture object's ledger claim outlives S3's redeliveries and Lambda's async retries (hours) by far.
CAPTURE_LEDGER_DAYS = 30


@dataclass
class CaptureReport:
    """What capture objects came to: predictions counted, or not (redelivered object, no reference), and drift."""

    counted: int = 0
    redelivered: int = 0
    unreferenced: int = 0
    objects: int = 0
    drift_started: int = 0
    drift_stopped: int = 0

    def add(self, other: CaptureReport) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def as_dict(self) -> dict[str, int]:
        return {
            "captures_counted": self.counted,
            "captures_redelivered": self.redelivered,
            "captures_unreferenced": self.unreferenced,
            "capture_objects": self.objects,
            "drift_started": self.drift_started,
            "drift_stopped": self.drift_stopped,
        }


@dataclass
class Report:
    """What one source (a queue message, a label file) came to; ``invalid`` counts refused file rows."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    invalid: int = 0
    requeued: int = 0  # a file's pending labels, sent to the feedback queue to be retried there

    @property
    def retry(self) -> bool:
        return self.outcomes[Outcome.PENDING] > 0

    def add(self, other: Report) -> None:
        self.outcomes.update(other.outcomes)
        self.invalid += other.invalid
        self.requeued += other.requeued

    def as_dict(self) -> dict[str, int]:
        return {**{o.value: self.outcomes[o] for o in Outcome}, "invalid": self.invalid, "requeued": self.requeued}


class JoinCache:
    """The predictions of each (city, day) partition read in this invocation, by id."""

    def __init__(self, captures: CaptureSource) -> None:
        self._captures = captures
        self._partitions: dict[tuple[str, str], dict[str, CapturedPrediction]] = {}

    def find(self, prediction_id: str, city: str, day: str) -> CapturedPrediction | None:
        key = (city, day)
        if key not in self._partitions:
            self._partitions[key] = {p.prediction_id: p for p in self._captures.partition(city, day)}
        return self._partitions[key].get(prediction_id)

    def forget(self, city: str, day: str) -> None:
        """Drop a partition: a later read sees objects delivered since (a pending label's retry)."""
        self._partitions.pop((city, day), None)


class QualityService:
    def __init__(
        self,
        captures: CaptureSource,
        store: QualityStore,
        offline: OfflineFigures,
        *,
        retention_days: int,
        capture_wait: timedelta,
        files: LabelFiles | None = None,
        labels_prefix: str = "",
        queue: LabelQueue | None = None,
        capture_objects: CaptureObjects | None = None,
        captures_prefix: str | None = None,
        references: ReferenceSource | None = None,
        drift_store: DriftStore | None = None,
        drift_thresholds: drift.Thresholds = drift.DEFAULT_THRESHOLDS,
    ) -> None:
        self.queue = queue
        self.capture_objects = capture_objects
        self.captures_prefix = captures_prefix
        self.references = references
        self.drift_store = drift_store
        self.drift_thresholds = drift_thresholds
        self._references: dict[tuple[str, str], Mapping[str, drift.Reference]] = {}
        self.captures = captures
        self.cache = JoinCache(captures)
        self.files = files
        self.labels_prefix = labels_prefix
        self.store = store
        self.offline = offline
        self.retention_days = retention_days
        self.capture_wait = capture_wait
        self._offline: dict[tuple[str, str], float | None] = {}

    def new_invocation(self) -> None:
        """Partitions and offline figures are cached for one invocation only (memory stays bounded)."""
        self.cache = JoinCache(self.captures)
        self._offline.clear()
        self._references.clear()

    def is_capture_key(self, key: str) -> bool:
        return bool(self.captures_prefix) and unquote_plus(key).startswith(self.captures_prefix or "")

    def handle_capture_event(self, records: Sequence[Any], now: datetime) -> CaptureReport:
        """S3's ObjectCreated records of capture objects (the function's S3 trigger on ``captures/``)."""
        report = CaptureReport()
        for record in records:
            try:
                bucket = str(record["s3"]["bucket"]["name"])
                key = unquote_plus(str(record["s3"]["object"]["key"]))
            except (KeyError, TypeError):
                logger.error("Refused an S3 record without bucket and key", extra={"record": str(record)[:2000]})
                continue
            report.add(self.handle_capture_object(bucket, key, now))
        return report

    def handle_capture_object(self, bucket: str, key: str, now: datetime) -> CaptureReport:
        """Bin one capture object's predictions per (city, version) and count them once; then refresh drift."""
        if self.capture_objects is None or self.drift_store is None or self.references is None:
            logger.warning("Ignored a capture object: drift is not wired", extra={"key": key})
            return CaptureReport()
        found = self.capture_objects.read_object(bucket, key)
        if found is None:
            logger.warning("A capture object is gone; skipped", extra={"key": key})
            return CaptureReport()
        predictions, etag = found
        report = CaptureReport(objects=1)
        groups: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
        for prediction in predictions:
            groups.setdefault((prediction.city, prediction.version), {})[prediction.prediction_id] = prediction.features
        increments: dict[tuple[str, str], dict[str, int]] = {}
        counted = 0
        for (city, version), rows in groups.items():
            references = self._reference(city, version)
            if not references:
                report.unreferenced += len(rows)
                continue
            increments[(city, version)] = drift.live_increments(rows.values(), references)
            counted += len(rows)
        if not increments:
            return report
        expires_at = int((now + timedelta(days=CAPTURE_LEDGER_DAYS)).timestamp())
        recorded = self.drift_store.record_captures(
            ledger_key=f"capture#{key}",
            source=f"s3://{bucket}/{key}@{etag}",
            increments=increments,
            expires_at=expires_at,
        )
        if recorded is Recorded.COUNTED:
            report.counted += counted
        else:
            report.redelivered += counted
        # Refreshed even on a redelivery: a crash between the counts and the report must not leave it stale.
        for city, version in increments:
            change = self._refresh_drift(city, version)
            if change is True:
                report.drift_started += 1
            elif change is False:
                report.drift_stopped += 1
        return report

    def _reference(self, city: str, version: str) -> Mapping[str, drift.Reference]:
        key = (city, version)
        if key not in self._references:
            self._references[key] = self.references.references(city, version) if self.references else {}
        return self._references[key]

    def _refresh_drift(self, city: str, version: str) -> bool | None:
        """Recompute and save the version's drift report; True/False when it started/stopped drifting, else None.

        The save is conditional on the live count read (``seen_count``) and on the flag read (``was_drifting``):
        of concurrent refreshes only one that read the newest counts saves a change of the flag, so a
        transition is counted once.
        """
        assert self.drift_store is not None
        references = self._reference(city, version)
        item = self.drift_store.live_item(city, version)
        report = drift.drift_report(references, drift.live_counts(item, references), self.drift_thresholds)
        previous = item.get(drift.REPORT)
        was_drifting = bool(previous.get("drifting")) if isinstance(previous, Mapping) else False
        seen = item.get(drift.LIVE_COUNT, 0)
        seen_count = int(seen) if isinstance(seen, (int, float)) and not isinstance(seen, bool) else 0
        saved = self.drift_store.save_report(city, version, report.to_json(), seen_count, was_drifting)
        if saved and report.drifting != was_drifting:
            return report.drifting
        return None

    def handle_message(self, body: str, message_id: str, now: datetime) -> Report:
        """One queue message: the router's labels, or S3's notification of label files under ``labels/``."""
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping) and parsed.get("Event") == "s3:TestEvent":
            return Report()
        if isinstance(parsed, Mapping) and isinstance(parsed.get("Records"), list):
            report = Report()
            for record in parsed["Records"]:
                report.add(self._handle_s3_record(record, now))
            return report
        try:
            labels = parse_label_message(body, now, self.retention_days)
        except InvalidInput as error:
            # Never retried (it cannot get better); logged with its problems so nothing vanishes unseen.
            logger.error(
                "Refused a feedback message",
                extra={
                    "message_id": message_id,
                    "problems": [p.as_dict() for p in error.problems[:20]],
                    "body": body[:2000],
                },
            )
            return Report(invalid=1)
        return self.process(labels, f"sqs:{message_id}", now)

    def handle_s3_event(self, records: Sequence[Any], now: datetime) -> Report:
        """S3's ObjectCreated records of label files (the function's S3 trigger on ``labels/``)."""
        report = Report()
        for record in records:
            report.add(self._handle_s3_record(record, now))
        return report

    def _handle_s3_record(self, record: Any, now: datetime) -> Report:
        try:
            bucket = str(record["s3"]["bucket"]["name"])
            key = unquote_plus(str(record["s3"]["object"]["key"]))
        except (KeyError, TypeError):
            logger.error("Refused an S3 record without bucket and key", extra={"record": str(record)[:2000]})
            return Report(invalid=1)
        if self.files is None or not key.startswith(self.labels_prefix) or key.endswith("/"):
            logger.warning("Ignored an object outside the labels prefix", extra={"key": key})
            return Report()
        found = self.files.read(bucket, key)
        if found is None:
            logger.warning("A label file is gone or too large; skipped", extra={"key": key})
            return Report(invalid=1)
        body, etag = found
        report = Report()
        labels: list[Label] = []
        for row in parse_label_file(key, body, now, self.retention_days):
            if row.label is None:
                report.invalid += 1
                logger.warning(
                    "Refused a label row", extra={"key": key, "problems": [p.as_dict() for p in row.problems[:10]]}
                )
            else:
                labels.append(row.label)
        source = f"s3://{bucket}/{key}@{etag}"
        pending: list[Label] = []
        for label in labels:
            outcome = self.process_one(label, source, now)
            if outcome is Outcome.PENDING and self.queue is not None:
                pending.append(label)
            else:
                report.outcomes[outcome] += 1
        for start in range(0, len(pending), REQUEUE_CHUNK):
            self.queue.send(pending[start : start + REQUEUE_CHUNK])  # type: ignore[union-attr]
        report.requeued = len(pending)
        return report

    def process(self, labels: Sequence[Label], source: str, now: datetime) -> Report:
        report = Report()
        for label in labels:
            report.outcomes[self.process_one(label, source, now)] += 1
        return report

    def process_one(self, label: Label, source: str, now: datetime) -> Outcome:
        if label.prediction_id is None:
            return Outcome.UNKNOWN
        made_at, city = parse_prediction_id(label.prediction_id)
        day = made_at.date().isoformat()
        prediction = self.cache.find(label.prediction_id, city, day)
        if prediction is None:
            if now - made_at < self.capture_wait:
                self.cache.forget(city, day)
                return Outcome.PENDING
            return Outcome.UNKNOWN
        if not (math.isfinite(prediction.price) and prediction.price >= 0):
            return Outcome.UNKNOWN  # a capture we cannot score is reported, never counted
        expires_at = made_at + timedelta(days=self.retention_days + 1)
        recorded = self.store.record(
            label=label,
            source=source,
            prediction=prediction,
            aggregate=Aggregate.of(prediction.price, label.sale_price),
            offline_ae_p50=self._offline_figure(prediction.city, prediction.version),
            expires_at=int(expires_at.timestamp()),
        )
        return {
            Recorded.COUNTED: Outcome.JOINED,
            Recorded.DUPLICATE: Outcome.DUPLICATE,
            Recorded.REDELIVERED: Outcome.REDELIVERED,
        }[recorded]

    def _offline_figure(self, city: str, version: str) -> float | None:
        key = (city, version)
        if key not in self._offline:
            self._offline[key] = self.offline.ae_p50(city, version)
        return self._offline[key]


def recorded_ae_p50(metrics: Mapping[str, Any] | None) -> float | None:
    """The gate's figure for a version: model-sync's measured ``validation.ae_p50``, else the reported one
    (the same reading as ``model_sync.gate.recorded_ae_p50``, which this package cannot import)."""
    measured = (metrics or {}).get("measured")
    value = _ae_p50(measured) if isinstance(measured, Mapping) else None
    return _ae_p50(metrics) if value is None else value


def _ae_p50(metrics: Mapping[str, Any] | None) -> float | None:
    validation = (metrics or {}).get("validation")
    value = validation.get("ae_p50") if isinstance(validation, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None
