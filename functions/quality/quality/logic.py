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
* **unknown**: not found after that.

A label named by (city, ``house_id``) is joined through the house index (``HouseIndex``): every captured
prediction that carries a ``house_id`` is indexed when its capture object is read (the ``captures/`` S3
event, which drift reads anyway), and the label takes **the latest prediction of that house made before
the end of its ``sold_at`` day (UTC), within the retention window** (``house_window``): one bounded
query, no capture object read. Such a label claims its prediction too (``id#…``), so a label by id and
one by house for the same prediction count once between them. It is pending while it is younger than
``capture_wait`` and a prediction made before the end of its sale day could still be on its way.

Within one source (a message, a file) a label key seen twice is a duplicate without asking the store.

Partitions are read once per invocation (``JoinCache``): a queue batch or a label file with many
labels of the same city and day reads that day's objects once, and parses only the lines that hold the
ids asked for (``captures.CaptureLines``; the answers of a full parse, at a fraction of its cost).

After the labels of an invocation, each (city, version) they counted is checked against the
degradation rule (``live_quality.DegradationRule``: live error > k × offline with enough labels, live
versions only); a change of its flag is saved conditionally, so each transition is counted once
(``QualityDegraded`` / ``QualityRecovered``, as drift's).

Capture objects (the S3 event on ``captures/``) feed drift (``house_prices.drift``): each object's
predictions are binned per (city, version) by that version's reference bins (from the registry, cached
per invocation) and ADDed with one update per (city, version), claimed in the ledger per object key in
the same transaction (S3 events are at least once); then each touched version's drift report is
recomputed and saved, and the (city, version) pairs that start or stop drifting are counted.

Rollouts (docs/rollouts.md, "Shadow scoring" and "Evidence"): a capture object's lines tagged
by a rollout also feed that rollout's operational evidence and shadow scoring (``RolloutCaptures``,
``quality.shadow``), and a label joining a tagged prediction adds its rollout evidence in the same
transaction that claims it (``RolloutLabels``, ``quality.rollout_labels``).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Any, NamedTuple, Protocol
from urllib.parse import unquote_plus

from house_prices import drift
from house_prices.captures import CapturedPrediction, CaptureLines
from house_prices.errors import DependencyFailure, InvalidInput
from house_prices.ids import parse_prediction_id, ulid_timestamp_ms
from house_prices.labels import Label, parse_label_file, read_label_message
from house_prices.live_quality import DEGRADED, OFFLINE, Aggregate, DegradationRule, QualitySummary
from house_prices.observability import logger
from quality.rollout_labels import EvidenceIncrement, Priced, RolloutLabels

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


class HousePrediction(NamedTuple):
    """A house index entry: one captured prediction of a caller's ``house_id``."""

    city: str
    house_id: str
    prediction_id: str
    version: str
    price: float
    rollout: Mapping[str, Any] | None = None  # the capture line's rollout tag, if any


class HouseIndex(Protocol):
    """Predictions by (city, ``house_id``), ordered by prediction id (so by time)."""

    def add(self, entries: Sequence[tuple[HousePrediction, int]]) -> None:
        """Index each entry until its ``expires_at`` (idempotent: a redelivered object writes the same)."""
        ...

    def latest(self, city: str, house_id: str, made_from: datetime, made_before: datetime) -> HousePrediction | None:
        """The entry with the largest prediction id made in [``made_from``, ``made_before``), or None."""
        ...


class VersionFacts(NamedTuple):
    """What the registry says of a version: the gate's offline figure, and whether it is the city's live one."""

    ae_p50: float | None
    live: bool


class OfflineFigures(Protocol):
    def facts(self, city: str, version: str) -> VersionFacts: ...


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
        prediction: Priced,
        aggregate: Aggregate,
        offline_ae_p50: float | None,
        expires_at: int,
        evidence: EvidenceIncrement | None = None,
    ) -> Recorded:
        """Claim ``label.key`` (and ``id#{prediction_id}`` when that differs) and ADD the aggregate, atomically;
        with ``evidence``, ADD it to the rollout's evidence item in the same transaction."""
        ...

    def live_item(self, city: str, version: str) -> Mapping[str, Any]: ...

    def save_degraded(self, city: str, version: str, degraded: bool, seen_count: int, was_degraded: bool) -> bool:
        """SET the flag if the label count is still ``seen_count`` and the flag still ``was_degraded``."""
        ...


class RolloutCaptures(Protocol):
    """A capture object's rollout side: operational evidence from its tagged lines, shadow scoring."""

    def record_object(
        self, bucket: str, key: str, etag: str, predictions: Sequence[CapturedPrediction], now: datetime
    ) -> CaptureReport: ...


class ReferenceSource(Protocol):
    def references(self, city: str, version: str) -> Mapping[str, drift.Reference]: ...


class CaptureObjects(Protocol):
    def read_object(self, bucket: str, key: str) -> tuple[list[CapturedPrediction], str] | None: ...


class CaptureClaims(Protocol):
    """A capture object's ledger claim with its counts: drift's (``DriftStore``) and rollouts' (``EvidenceLedger``)."""

    def record_captures(
        self, *, ledger_key: str, source: str, increments: Mapping[tuple[str, str], Mapping[str, int]], expires_at: int
    ) -> Recorded:
        """Claim ``ledger_key`` and ADD each (city, item version)'s counts, in one transaction."""
        ...


class DriftStore(CaptureClaims, Protocol):
    def live_item(self, city: str, version: str) -> Mapping[str, Any]: ...

    def save_report(
        self, city: str, version: str, report: Mapping[str, Any], seen_count: int, was_drifting: bool
    ) -> bool: ...


# A capture object's ledger claim outlives S3's redeliveries and Lambda's async retries (hours) by far.
CAPTURE_LEDGER_DAYS = 30


def house_window(sold_at: str, now: datetime, retention_days: int) -> tuple[datetime, datetime]:
    """[made_from, made_before): when the prediction a house label names can have been made.

    The rule when a house was priced several times: the **latest prediction made before the end of the
    ``sold_at`` day (UTC)** and not older than the retention window. A price asked after the sale (a
    relisting) is not what the sale price judges; an earlier price of the same house is superseded by
    the later one, which the seller and buyer saw last.
    """
    made_before = datetime.combine(date.fromisoformat(sold_at) + timedelta(days=1), time(), UTC)
    return now - timedelta(days=retention_days), made_before


def house_entries(predictions: Iterable[CapturedPrediction], retention_days: int) -> list[tuple[HousePrediction, int]]:
    """The house index entries of captured predictions that carry a ``house_id`` (one per prediction id),
    each with its expiry: the prediction's time + the retention window + a day, as the ledger's."""
    entries: dict[str, tuple[HousePrediction, int]] = {}
    for p in predictions:
        if p.house_id is None or p.prediction_id in entries or not math.isfinite(p.price):
            continue
        try:
            made_ms = ulid_timestamp_ms(p.prediction_id[:26])
        except ValueError:
            continue  # not an id the API made: its labels cannot name it either
        expires_at = made_ms // 1000 + (retention_days + 1) * 86_400
        entries[p.prediction_id] = (
            HousePrediction(p.city, p.house_id, p.prediction_id, p.version, p.price, p.rollout),
            expires_at,
        )
    return list(entries.values())


@dataclass
class CaptureReport:
    """What capture objects came to: predictions counted, or not (redelivered object, no reference), and drift."""

    counted: int = 0
    redelivered: int = 0
    unreferenced: int = 0
    objects: int = 0
    drift_started: int = 0
    drift_stopped: int = 0
    houses_indexed: int = 0
    rollout_calls: int = 0  # InvokeEndpoint calls counted from tagged lines (both versions)
    rollout_redelivered: int = 0  # objects whose rollout evidence was counted before
    shadow_scored: int = 0  # sampled shadow predictions priced by their candidate
    shadow_failed_calls: int = 0  # the candidate's failed shadow calls (counted as its errors)

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
            "houses_indexed": self.houses_indexed,
            "rollout_calls": self.rollout_calls,
            "rollout_redelivered": self.rollout_redelivered,
            "shadow_scored": self.shadow_scored,
            "shadow_failed_calls": self.shadow_failed_calls,
        }


@dataclass
class Report:
    """What one source (a queue message, a label file) came to; ``invalid`` counts refused file rows."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    invalid: int = 0
    requeued: int = 0  # a file's pending labels, sent to the feedback queue to be retried there
    degraded: int = 0  # (city, live version) pairs whose live error went over k × offline (refresh_quality)
    recovered: int = 0  # ... and back under it
    paired: int = 0  # labels counted with a shadow pair (rollout evidence; refresh_quality)
    unpaired: int = 0  # shadow-sampled labels counted without one (the candidate's price never came)

    @property
    def retry(self) -> bool:
        return self.outcomes[Outcome.PENDING] > 0

    def add(self, other: Report) -> None:
        self.outcomes.update(other.outcomes)
        self.invalid += other.invalid
        self.requeued += other.requeued
        self.degraded += other.degraded
        self.recovered += other.recovered
        self.paired += other.paired
        self.unpaired += other.unpaired

    def as_dict(self) -> dict[str, int]:
        return {
            **{o.value: self.outcomes[o] for o in Outcome},
            "invalid": self.invalid,
            "requeued": self.requeued,
            "degraded": self.degraded,
            "recovered": self.recovered,
            "paired": self.paired,
            "unpaired": self.unpaired,
        }


class JoinCache:
    """The predictions of each (city, day) partition read in this invocation, by id."""

    def __init__(self, captures: CaptureSource) -> None:
        self._captures = captures
        self._partitions: dict[tuple[str, str], Mapping[str, CapturedPrediction] | CaptureLines] = {}

    def find(self, prediction_id: str, city: str, day: str) -> CapturedPrediction | None:
        key = (city, day)
        if key not in self._partitions:
            found = self._captures.partition(city, day)
            # The S3 adapter's lines are parsed only where they hold an id asked for; any other source, whole.
            self._partitions[key] = found if isinstance(found, CaptureLines) else {p.prediction_id: p for p in found}
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
        houses: HouseIndex | None = None,
        degradation: DegradationRule | None = None,
        rollouts: RolloutCaptures | None = None,
        rollout_labels: RolloutLabels | None = None,
    ) -> None:
        self.rollouts = rollouts
        self.rollout_labels = rollout_labels
        self._pairs: Counter[str] = Counter()
        self.houses = houses
        self.degradation = degradation or DegradationRule()
        self._touched: set[tuple[str, str]] = set()
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
        self._facts: dict[tuple[str, str], VersionFacts] = {}

    def new_invocation(self) -> None:
        """Partitions and offline figures are cached for one invocation only (memory stays bounded)."""
        self.cache = JoinCache(self.captures)
        self._facts.clear()
        self._references.clear()
        self._touched.clear()
        self._pairs.clear()
        if self.rollout_labels is not None:
            self.rollout_labels.new_invocation()

    def is_capture_key(self, key: str) -> bool:
        if not self.captures_prefix:
            return False
        return unquote_plus(key).startswith(self.captures_prefix)

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
        """Index one capture object's houses, bin its predictions per (city, version) and count them once;
        then refresh drift."""
        if self.capture_objects is None:
            logger.warning("Ignored a capture object: captures are not wired", extra={"key": key})
            return CaptureReport()
        found = self.capture_objects.read_object(bucket, key)
        if found is None:
            logger.warning("A capture object is gone; skipped", extra={"key": key})
            return CaptureReport()
        predictions, etag = found
        report = CaptureReport(objects=1)
        if self.houses is not None:
            # Before the drift claim: a crash in between is retried, and the index writes are idempotent.
            entries = house_entries(predictions, self.retention_days)
            if entries:
                self.houses.add(entries)
            report.houses_indexed = len(entries)
        if self.drift_store is not None and self.references is not None:
            report = self._count_drift(self.drift_store, self.references, bucket, key, etag, predictions, now, report)
        if self.rollouts is not None:
            # After drift: a rollout-side failure (S3, DynamoDB) retries the event, and drift's claim holds.
            report.add(self.rollouts.record_object(bucket, key, etag, predictions, now))
        return report

    def _count_drift(
        self,
        drift_store: DriftStore,
        reference_source: ReferenceSource,
        bucket: str,
        key: str,
        etag: str,
        predictions: Sequence[CapturedPrediction],
        now: datetime,
        report: CaptureReport,
    ) -> CaptureReport:
        groups: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
        for prediction in predictions:
            groups.setdefault((prediction.city, prediction.version), {})[prediction.prediction_id] = prediction.features
        increments: dict[tuple[str, str], dict[str, int]] = {}
        counted = 0
        for (city, version), rows in groups.items():
            references = self._reference(reference_source, city, version)
            if not references:
                report.unreferenced += len(rows)
                continue
            increments[(city, version)] = drift.live_increments(rows.values(), references)
            counted += len(rows)
        if not increments:
            return report
        expires_at = int((now + timedelta(days=CAPTURE_LEDGER_DAYS)).timestamp())
        recorded = drift_store.record_captures(
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
            change = self._refresh_drift(drift_store, reference_source, city, version)
            if change is True:
                report.drift_started += 1
            elif change is False:
                report.drift_stopped += 1
        return report

    def _reference(self, reference_source: ReferenceSource, city: str, version: str) -> Mapping[str, drift.Reference]:
        key = (city, version)
        if key not in self._references:
            self._references[key] = reference_source.references(city, version)
        return self._references[key]

    def _refresh_drift(
        self, drift_store: DriftStore, reference_source: ReferenceSource, city: str, version: str
    ) -> bool | None:
        """Recompute and save the version's drift report; True/False when it started/stopped drifting, else None.

        The save is conditional on the live count read (``seen_count``) and on the flag read (``was_drifting``):
        of concurrent refreshes only one that read the newest counts saves a change of the flag, so a
        transition is counted once.
        """
        references = self._reference(reference_source, city, version)
        item = drift_store.live_item(city, version)
        report = drift.drift_report(references, drift.live_counts(item, references), self.drift_thresholds)
        previous = item.get(drift.REPORT)
        was_drifting = bool(previous.get("drifting")) if isinstance(previous, Mapping) else False
        seen = item.get(drift.LIVE_COUNT, 0)
        seen_count = int(seen) if isinstance(seen, (int, float)) and not isinstance(seen, bool) else 0
        saved = drift_store.save_report(city, version, report.to_json(), seen_count, was_drifting)
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
            received_at, labels = read_label_message(body, now, self.retention_days)
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
        return self.process(labels, f"sqs:{message_id}", now, received_at=received_at)

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
        seen: set[str] = set()
        for label in labels:
            outcome = self.process_one(label, source, now, seen=seen)
            if outcome is Outcome.PENDING and self.queue is not None:
                pending.append(label)
            else:
                report.outcomes[outcome] += 1
        for start in range(0, len(pending), REQUEUE_CHUNK):
            self.queue.send(pending[start : start + REQUEUE_CHUNK])  # type: ignore[union-attr]
        report.requeued = len(pending)
        return report

    def process(
        self, labels: Sequence[Label], source: str, now: datetime, *, received_at: datetime | None = None
    ) -> Report:
        report = Report()
        seen: set[str] = set()
        for label in labels:
            report.outcomes[self.process_one(label, source, now, received_at=received_at, seen=seen)] += 1
        return report

    def process_one(
        self,
        label: Label,
        source: str,
        now: datetime,
        *,
        received_at: datetime | None = None,
        seen: set[str],
    ) -> Outcome:
        """Join one label and count it once. ``received_at``: when the label reached us (its message's
        time; ``now`` for a file); ``seen``: the label keys of this source settled so far."""
        if label.key in seen:
            return Outcome.DUPLICATE  # the same label twice in one source: counted at most once, reported
        prediction, missing = self.find(label, now, received_at or now)
        if prediction is None:
            return missing
        if not (math.isfinite(prediction.price) and prediction.price >= 0):
            return Outcome.UNKNOWN  # a capture we cannot score is reported, never counted
        made_at = datetime.fromtimestamp(ulid_timestamp_ms(prediction.prediction_id[:26]) / 1000, UTC)
        expires_at = made_at + timedelta(days=self.retention_days + 1)
        judged = self.rollout_labels.judge(prediction, label.sale_price, now) if self.rollout_labels else None
        if judged is not None and judged.pending:
            return Outcome.PENDING  # its shadow record may still be on its way: nothing claimed yet
        facts = self._version_facts(prediction.city, prediction.version)
        # Passed only when there is some, so a store without rollouts keeps its signature.
        evidence = judged.evidence if judged is not None else None
        rollout: dict[str, Any] = {"evidence": evidence} if evidence is not None else {}
        recorded = self.store.record(
            label=label,
            source=source,
            prediction=prediction,
            aggregate=Aggregate.of(prediction.price, label.sale_price),
            offline_ae_p50=facts.ae_p50,
            expires_at=int(expires_at.timestamp()),
            **rollout,
        )
        seen.add(label.key)
        if recorded is Recorded.COUNTED:
            self._touched.add((prediction.city, prediction.version))
            if judged is not None:
                self._pairs.update(paired=int(judged.paired), unpaired=int(judged.unpaired))
        return {
            Recorded.COUNTED: Outcome.JOINED,
            Recorded.DUPLICATE: Outcome.DUPLICATE,
            Recorded.REDELIVERED: Outcome.REDELIVERED,
        }[recorded]

    def find(self, label: Label, now: datetime, received_at: datetime) -> tuple[Priced | None, Outcome]:
        """The prediction a label names, or None with what that means now: PENDING or UNKNOWN."""
        if label.prediction_id is not None:
            made_at, city = parse_prediction_id(label.prediction_id)
            day = made_at.date().isoformat()
            found = self.cache.find(label.prediction_id, city, day)
            if found is not None:
                return found, Outcome.JOINED
            if now - made_at < self.capture_wait:
                self.cache.forget(city, day)
                return None, Outcome.PENDING
            return None, Outcome.UNKNOWN
        if label.house_id is None or self.houses is None:
            return None, Outcome.UNKNOWN
        made_from, made_before = house_window(label.sold_at, now, self.retention_days)
        entry = self.houses.latest(label.city, label.house_id, made_from, made_before)
        if entry is not None:
            return entry, Outcome.JOINED
        # A prediction made before the end of the sale day may still be in Firehose's buffer: wait for it,
        # but only capture_wait from the label's arrival (the queue gives up on a message after an hour).
        if now - received_at < self.capture_wait and made_before > now - self.capture_wait:
            return None, Outcome.PENDING
        return None, Outcome.UNKNOWN

    def refresh_quality(self) -> Report:
        """Check the (city, version) pairs this invocation counted labels for against the degradation rule;
        save a changed flag conditionally and count each transition once. A store failure here loses no
        label (they are counted): the next label of the version checks again."""
        report = Report(paired=self._pairs["paired"], unpaired=self._pairs["unpaired"])
        self._pairs.clear()
        for city, version in sorted(self._touched):
            try:
                change = self._refresh_degradation(city, version)
            except DependencyFailure as error:
                logger.warning(
                    "Degradation check skipped", extra={"city": city, "version": version, "error": error.message}
                )
                continue
            if change is True:
                report.degraded += 1
            elif change is False:
                report.recovered += 1
        self._touched.clear()
        return report

    def _refresh_degradation(self, city: str, version: str) -> bool | None:
        item = self.store.live_item(city, version)
        offline = item.get(OFFLINE)
        summary = QualitySummary.of(
            city,
            version,
            Aggregate.from_attributes(item),
            float(offline) if isinstance(offline, (int, float)) and not isinstance(offline, bool) else None,
        )
        degraded = self._version_facts(city, version).live and self.degradation.applies(summary)
        was = item.get(DEGRADED) is True
        if degraded == was:
            return None
        if self.store.save_degraded(city, version, degraded, summary.count, was):
            logger.info(
                "Live quality " + ("degraded" if degraded else "recovered"),
                extra={"city": city, "version": version, "live_vs_offline": summary.live_vs_offline},
            )
            return degraded
        return None

    def _version_facts(self, city: str, version: str) -> VersionFacts:
        key = (city, version)
        if key not in self._facts:
            self._facts[key] = self.offline.facts(city, version)
        return self._facts[key]


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
