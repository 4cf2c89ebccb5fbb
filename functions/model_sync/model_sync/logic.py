"""Sync one training output: inspect it, copy it to its immutable versioned key, register, gate, promote.

Every step is idempotent, so Lambda may re-run an event (retry or duplicate delivery) at any point:

1. the version is derived from the source object itself (LastModified + sha256), never from the event;
   the packed forest is validated structurally and measured on the city's validation rows (same rows,
   same code, same result on every run), and the live model is measured on the same rows for the gate;
2. the copy is skipped when the destination already holds the same sha256, and never overwrites a
   different one;
3. the version record is created once (conditional put) in the ``standby`` state with the
   ``PENDING`` reason; the gate's decision replaces that reason (promotion or hold-back);
4. a re-run finding the record still PENDING resumes at the gate; any other state is a duplicate and
   changes nothing, so an operator's rollback is never undone by a late duplicate event;
5. promotion is a monotonic conditional write: an older version never replaces a newer live one;
6. with a rollout policy (``ROLLOUT_POLICY``, or the city's override in the registry) a candidate that
   passed the gate enters a shadow or canary rollout instead (docs/rollouts.md) when its city has a live
   version: one transaction starts it and sets the candidate's status to ``candidate``, so a redelivered
   event finds no PENDING record and is a duplicate (never a second rollout, never a restart). A newer
   candidate supersedes a running rollout; an older one stays ``standby``;
7. a promoted (or rolled-out) version is pre-warmed with one tiny request (best effort: bounded by the
   client's timeouts, logged and counted when it fails, never undoing or blocking the promotion).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np

from house_prices.artifacts import ArtifactReport, HashingReader, Readable, inspect_artifact
from house_prices.errors import DependencyFailure, InvalidArtifact, NotAModelKey, PromotionRefused, RolloutConflict
from house_prices.naming import PACKED_MODEL_FILENAME, KeyLayout, TrainingOutput, make_version, target_model
from house_prices.observability import MetricUnit, logger, metrics
from house_prices.registry import PENDING_REASON, LiveModel, ModelVersion, Rollout, RolloutMode, Status
from house_prices.rollout_stats import GuardPolicy
from house_prices.schema import FEATURE_NAMES
from model_sync.gate import GatePolicy, Measured, decide, disagreement, metrics_problem
from model_sync.measure import MAX_VALIDATION_BYTES, ValidationRowsProblem, measure, parse_rows
from model_sync.rollout_policy import DEFAULT_ROLLOUT_MAX_DAYS, ROLLOUT_OFF, RolloutPolicy
from packed_forest import PackedForest, PackedForestError

Action = Literal["promoted", "rollout", "standby", "duplicate", "rejected", "ignored"]
ROLLOUT_ACTOR = "model-sync"
PENDING = PENDING_REASON
SHA256_METADATA = "sha256"

# One metric per outcome; no city/version dimension (cardinality).
_METRIC_BY_ACTION: dict[str, str] = {
    "promoted": "ModelsPromoted",
    "rollout": "RolloutsStarted",
    "standby": "ModelsHeldBack",
    "duplicate": "DuplicateEvents",
    "rejected": "ArtifactsRejected",
    "ignored": "IgnoredEvents",
}


@dataclass(frozen=True)
class ObjectInfo:
    """What model-sync needs to know about one S3 object (its HEAD)."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str = ""


class Closeable(Readable, Protocol):
    def close(self) -> None: ...


class ArtifactStore(Protocol):
    def head(self, bucket: str, key: str) -> ObjectInfo | None: ...
    def read_bytes(self, bucket: str, key: str, max_bytes: int) -> bytes | None: ...
    def open(self, source: ObjectInfo) -> Closeable: ...
    def copy(self, source: ObjectInfo, bucket: str, key: str, metadata: dict[str, str]) -> None: ...


class Warmer(Protocol):
    def warm(self, target_model: str) -> None: ...


class Registry(Protocol):
    # Restates ModelRegistry's signatures on purpose: the logic depends on this protocol, which both the
    # DynamoDB adapter and the unit tests' in-memory registry satisfy (mypy checks the adapter against it
    # where wiring.py passes it in; the tests are not type-checked).
    def record_version(self, version: ModelVersion) -> tuple[ModelVersion, bool]: ...
    def version(self, city: str, version: str) -> ModelVersion: ...
    def find_live(self, city: str) -> LiveModel | None: ...
    def set_status(self, city: str, version: str, status: Status, reason: str = "") -> None: ...
    def promote(
        self,
        city: str,
        version: str,
        expected_live: str | None = None,
        force: bool = False,
        reason: str | None = None,
    ) -> LiveModel: ...
    def start_rollout(
        self,
        city: str,
        candidate_version: str,
        mode: RolloutMode,
        weight_bp: int,
        policy: Mapping[str, Any],
        duration_seconds: float,
        actor: str,
        reason: str = "",
        now: datetime | None = None,
        replace: bool = False,
    ) -> Rollout: ...
    def rollout_override(self, city: str) -> str | None: ...


@dataclass(frozen=True)
class SyncResult:
    action: Action
    reason: str
    key: str
    city: str | None = None
    version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ValidationRows:
    """A city's held-out rows (or why there are none): what candidate and live are measured on."""

    where: str
    features: np.ndarray | None = None
    prices: np.ndarray | None = None
    problem: str = ""


@dataclass(frozen=True)
class ModelSync:
    store: ArtifactStore
    registry: Registry
    bucket: str
    layout: KeyLayout
    gate: GatePolicy
    max_unpacked_bytes: int
    warmer: Warmer | None = None
    rollout: RolloutPolicy = ROLLOUT_OFF
    rollout_max_days: int = DEFAULT_ROLLOUT_MAX_DAYS

    # entry points
    def sync_event_records(self, records: Iterable[Any]) -> list[SyncResult]:
        """Sync every record of an S3 event; re-raise the first transient failure after trying all.

        Finishing the other records first keeps a retry cheap: they are duplicates by then.
        """
        results: list[SyncResult] = []
        failure: DependencyFailure | None = None
        for record in records:
            raw = record.raw_event if hasattr(record, "raw_event") else record
            # The raw key: KeyLayout decodes it exactly once (the data class's .key is decoded already).
            raw_key = str(raw["s3"]["object"]["key"])
            event_name = str(raw.get("eventName", ""))
            if not event_name.startswith("ObjectCreated:"):
                results.append(self._ignored(raw_key, f"event {event_name!r} is not an object creation"))
                continue
            try:
                with logger.append_context_keys(s3_key=raw_key, event_time=raw.get("eventTime")):
                    results.append(self.sync_training_output(str(raw["s3"]["bucket"]["name"]), raw_key))
            except DependencyFailure as error:
                logger.exception("transient failure; the event will be retried", extra={"key": raw_key})
                failure = failure or error
        if failure:
            raise failure
        return results

    def sync_training_output(self, bucket: str, raw_key: str) -> SyncResult:
        if bucket != self.bucket:
            return self._ignored(raw_key, f"bucket {bucket!r} is not the artifact bucket {self.bucket!r}")
        try:
            output = self.layout.parse_training_output_key(raw_key)
        except NotAModelKey as error:
            return self._ignored(raw_key, error.message)
        source = self.store.head(bucket, output.key)
        if source is None:
            # Deleted after the event: nothing to serve; a re-upload brings its own event.
            return self._ignored(output.key, "source object no longer exists")
        with logger.append_context_keys(city=output.city):
            return self._sync(output, source)

    # steps
    def _sync(self, output: TrainingOutput, source: ObjectInfo) -> SyncResult:
        body = self.store.open(source)
        reader = HashingReader(body)
        try:
            report = inspect_artifact(reader, max_unpacked_bytes=self.max_unpacked_bytes)
        except InvalidArtifact as invalid:
            # Hash the rest so the rejection is recorded under the version a retry would derive too.
            complete = reader.drain(max_bytes=self.max_unpacked_bytes)
            version = make_version(source.last_modified, reader.sha256) if complete else None
            return self._reject(output, source, version, invalid.message, sha256=reader.sha256 if complete else "")
        finally:
            body.close()
        version = make_version(source.last_modified, report.sha256)
        try:
            forest = PackedForest.from_bytes(report.packed_model)
        except PackedForestError as error:
            reason = f"{PACKED_MODEL_FILENAME} is not a servable packed forest: {error}"
            return self._reject(output, source, version, reason, report.sha256, report.metrics)
        if forest.feature_names != FEATURE_NAMES:
            reason = f"model features {list(forest.feature_names)} differ from the serving order {list(FEATURE_NAMES)}"
            return self._reject(output, source, version, reason, report.sha256, report.metrics)
        problem = metrics_problem(report.metrics)
        if problem:
            return self._reject(output, source, version, problem, report.sha256, report.metrics)
        rows = self._validation_rows(output.city)
        measured = self._measure(forest, rows)
        if measured is not None:
            lie = disagreement(report.metrics, measured)
            if lie:
                return self._reject(output, source, version, lie, report.sha256, report.metrics)

        artifact_key = self.layout.mme_key(output.city, version)
        conflict = self._copy_once(source, report, artifact_key, output, version)
        if conflict:
            return self._result("rejected", conflict, output, version)

        recorded_metrics = dict(report.metrics)
        if measured is not None:
            recorded_metrics["measured"] = {"validation": dict(measured.metrics), "rows_key": rows.where}
        record, created = self.registry.record_version(
            ModelVersion(
                city=output.city,
                version=version,
                status="standby",
                artifact_key=artifact_key,
                source_key=output.key,
                sha256=report.sha256,
                created_at=source.last_modified.isoformat(),
                metrics=recorded_metrics,
                reason=PENDING,
            )
        )
        if not created:
            if record.sha256 != report.sha256:
                return self._result("rejected", f"version {version} is registered with another sha256", output, version)
            if not (record.status == "standby" and record.reason == PENDING):
                return self._result("duplicate", f"already {record.status}: {record.reason}", output, version)
            logger.info("resuming a version whose gate decision was interrupted")
        return self._decide(output, version, measured, rows)

    def _validation_rows(self, city: str) -> ValidationRows:
        key = self.layout.prep_key(city, "val")
        where = f"s3://{self.bucket}/{key}"
        raw = self.store.read_bytes(self.bucket, key, MAX_VALIDATION_BYTES)
        if raw is None:
            return ValidationRows(where, problem=f"no validation rows at {where}")
        if len(raw) > MAX_VALIDATION_BYTES:
            return ValidationRows(where, problem=f"validation rows at {where} exceed {MAX_VALIDATION_BYTES} bytes")
        try:
            features, prices = parse_rows(raw)
        except ValidationRowsProblem as problem:
            return ValidationRows(where, problem=f"{where}: {problem}")
        return ValidationRows(where, features, prices)

    @staticmethod
    def _measure(forest: PackedForest, rows: ValidationRows) -> Measured | None:
        if rows.features is None or rows.prices is None:
            return None
        try:
            return measure(forest, rows.features, rows.prices)
        except ValidationRowsProblem as problem:
            logger.warning("model could not be measured", extra={"reason": str(problem)})
            return None

    def _measure_live(self, live: LiveModel, rows: ValidationRows) -> tuple[Measured | None, str]:
        """The live model measured on the same rows, or None and why (a pickled legacy model, say)."""
        key = self.registry.version(live.city, live.version).artifact_key
        info = self.store.head(self.bucket, key) if key else None
        if info is None:
            return None, f"live artifact s3://{self.bucket}/{key} is missing"
        body = self.store.open(info)
        try:
            report = inspect_artifact(body, max_unpacked_bytes=self.max_unpacked_bytes)
            forest = PackedForest.from_bytes(report.packed_model)
        except (InvalidArtifact, PackedForestError) as error:
            return None, f"live artifact is not a packed forest: {error}"
        finally:
            body.close()
        measured = self._measure(forest, rows)
        return measured, "" if measured else "live model cannot be evaluated on the validation rows"

    def _copy_once(
        self, source: ObjectInfo, report: ArtifactReport, artifact_key: str, output: TrainingOutput, version: str
    ) -> str | None:
        """Copy unless already there; returns a conflict reason if the key holds something else."""
        existing = self.store.head(self.bucket, artifact_key)
        if existing is not None:
            if existing.metadata.get(SHA256_METADATA) == report.sha256:
                return None
            logger.error("versioned key holds a different artifact; refusing to overwrite", extra={"key": artifact_key})
            return f"{artifact_key} already holds a different artifact; immutable keys are never overwritten"
        self.store.copy(
            source,
            self.bucket,
            artifact_key,
            metadata={SHA256_METADATA: report.sha256, "source-key": output.key, "version": version},
        )
        return None

    def _decide(
        self, output: TrainingOutput, version: str, candidate: Measured | None, rows: ValidationRows
    ) -> SyncResult:
        city = output.city
        live = self.registry.find_live(city)
        if live is not None and live.version == version:
            return self._result("promoted", "already live", output, version)
        if live is not None and live.version > version:
            reason = f"not promoted: newer version {live.version} is live"
            self.registry.set_status(city, version, "standby", reason)
            return self._result("standby", reason, output, version)
        live_measured, unmeasured = None, rows.problem
        if live is not None and candidate is not None and self.gate.mode != "always":
            live_measured, unmeasured = self._measure_live(live, rows)
        decision = decide(self.gate, candidate, live_measured, has_live=live is not None, unmeasured_reason=unmeasured)
        if not decision.promote:
            self.registry.set_status(city, version, "standby", decision.reason)
            return self._result("standby", decision.reason, output, version)
        if live is not None:  # the first version of a city has nothing to be compared with: it goes live
            policy = self._rollout_policy(city)
            if policy.rollout_mode is not None:
                return self._roll_out(output, version, live, policy, policy.rollout_mode, decision.reason)
        try:
            self.registry.promote(city, version, reason=decision.reason)
        except PromotionRefused as refused:
            # Lost a race with another promotion; the monotonic rule decides who stays live.
            current = self.registry.find_live(city)
            if current is not None and current.version == version:
                return self._result("promoted", "already live", output, version)
            reason = f"{refused.message}; gate {decision.reason}"
            self.registry.set_status(city, version, "standby", reason)
            return self._result("standby", reason, output, version)
        self._prewarm(target_model(city, version))
        return self._result("promoted", decision.reason, output, version)

    def _rollout_policy(self, city: str) -> RolloutPolicy:
        """The city's override when it has one, else the deployment's ROLLOUT_POLICY."""
        spec = self.registry.rollout_override(city)
        if spec is None:
            return self.rollout
        try:
            return RolloutPolicy.parse(spec)
        except ValueError as error:
            # ops validates overrides before storing them; a hand-edited item must not wedge the city's syncs.
            logger.error(
                "the city's rollout override is not a policy; ROLLOUT_POLICY applies", extra={"why": f"{error}"}
            )
            return self.rollout

    def _roll_out(
        self,
        output: TrainingOutput,
        version: str,
        live: LiveModel,
        policy: RolloutPolicy,
        mode: RolloutMode,
        gate_reason: str,
    ) -> SyncResult:
        """Start a rollout of ``version`` against ``live`` (superseding an older candidate's rollout)."""
        city = output.city
        running = live.rollout
        if running is not None and running.candidate_version >= version:
            if running.candidate_version == version:
                return self._result("rollout", f"already in a {running.mode} rollout", output, version)
            reason = f"not rolled out: newer version {running.candidate_version} is in a {running.mode} rollout"
            self.registry.set_status(city, version, "standby", reason)
            return self._result("standby", reason, output, version)
        reason = f"{gate_reason}; rollout {policy}"
        try:
            rollout = self.registry.start_rollout(
                city,
                version,
                mode,
                policy.weight_bp,
                GuardPolicy().as_dict(),  # the guards in force at the start stay the rollout's
                policy.duration_seconds(self.rollout_max_days),
                ROLLOUT_ACTOR,
                reason=reason,
                replace=running is not None,
            )
        except (RolloutConflict, PromotionRefused) as refused:
            # Lost a race (a concurrent twin of this event, a newer version, an operator); re-read who won.
            current = self.registry.find_live(city)
            if current is not None and current.version == version:
                return self._result("promoted", "already live", output, version)
            if current is not None and current.rollout is not None and current.rollout.candidate_version == version:
                return self._result("rollout", f"already in a {current.rollout.mode} rollout", output, version)
            reason = f"{refused.message}; gate {gate_reason}"
            self.registry.set_status(city, version, "standby", reason)
            return self._result("standby", reason, output, version)
        self._prewarm(rollout.candidate_target_model)
        return self._result("rollout", reason, output, version)

    def _prewarm(self, model: str) -> None:
        if self.warmer is None:
            return
        started = time.perf_counter()
        try:
            self.warmer.warm(model)
        except DependencyFailure as failure:
            logger.warning("pre-warm failed; the first request will load the model", extra={"reason": failure.message})
            metrics.add_metric(name="PrewarmFailures", unit=MetricUnit.Count, value=1)
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info("pre-warmed the promoted version", extra={"target_model": model, "milliseconds": elapsed_ms})
        metrics.add_metric(name="PrewarmMilliseconds", unit=MetricUnit.Milliseconds, value=elapsed_ms)

    def _reject(
        self,
        output: TrainingOutput,
        source: ObjectInfo,
        version: str | None,
        reason: str,
        sha256: str = "",
        artifact_metrics: Mapping[str, Any] | None = None,
    ) -> SyncResult:
        logger.warning("artifact rejected", extra={"reason": reason, "version": version})
        if version is None:
            return self._result("rejected", reason, output, None)
        record, created = self.registry.record_version(
            ModelVersion(
                city=output.city,
                version=version,
                status="rejected",
                artifact_key="",
                source_key=output.key,
                sha256=sha256,
                created_at=source.last_modified.isoformat(),
                metrics=dict(artifact_metrics or {}),
                reason=reason,
            )
        )
        if not created:
            return self._result("duplicate", f"already {record.status}: {record.reason}", output, version)
        return self._result("rejected", reason, output, version)

    # helpers
    def _ignored(self, key: str, reason: str) -> SyncResult:
        logger.info("ignored", extra={"key": key, "reason": reason})
        return self._count(SyncResult("ignored", reason, key))

    def _result(self, action: Action, reason: str, output: TrainingOutput, version: str | None) -> SyncResult:
        logger.info(f"model-sync {action}", extra={"action": action, "reason": reason, "version": version})
        return self._count(SyncResult(action, reason, output.key, output.city, version))

    @staticmethod
    def _count(result: SyncResult) -> SyncResult:
        metrics.add_metric(name=_METRIC_BY_ACTION[result.action], unit=MetricUnit.Count, value=1)
        return result


def summarize(results: Iterable[SyncResult]) -> dict[str, Any]:
    items = [result.as_dict() for result in results]
    counts: dict[str, int] = {}
    for item in items:
        counts[item["action"]] = counts.get(item["action"], 0) + 1
    return {"results": items, "counts": counts}
