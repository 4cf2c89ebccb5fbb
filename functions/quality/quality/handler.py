"""Lambda entry point: SQS batches of feedback messages, S3 events of label files and capture objects -> logic.

Partial batch responses (``ReportBatchItemFailures``): a message whose labels are not all settled
(a prediction not delivered yet, or a dependency failing) is reported failed and redelivered after
the queue's visibility timeout; the others are deleted. Labels already counted are never counted
again on redelivery (``quality.adapters.dynamodb``).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from house_prices.errors import DependencyFailure
from house_prices.observability import MetricUnit, logger, metrics, tracer
from quality import wiring
from quality.logic import CaptureReport, Outcome, QualityService, Report
from quality.settings import QualitySettings

# Aggregate counts only: a city or version as a dimension would make thousands of custom metrics.
METRIC_NAMES = {
    Outcome.JOINED: "LabelsJoined",
    Outcome.DUPLICATE: "LabelDuplicates",
    Outcome.REDELIVERED: "LabelsRedelivered",
    Outcome.PENDING: "LabelsPending",
    Outcome.UNKNOWN: "LabelsUnknown",
}
INVALID_METRIC = "LabelsInvalid"
# Drift: predictions binned from capture objects, and (city, version) pairs that started / stopped drifting.
CAPTURES_METRIC = "CapturesCounted"
DRIFT_STARTED_METRIC = "DriftStarted"
DRIFT_STOPPED_METRIC = "DriftStopped"
# Live quality: (city, live version) pairs whose live error went over k × offline / back under it.
DEGRADED_METRIC = "QualityDegraded"
RECOVERED_METRIC = "QualityRecovered"
# Rollouts (docs/rollouts.md, "Evidence"): labels that paired a shadow prediction, or could not; shadow
# predictions scored by their candidate, and the candidate's failed shadow calls.
PAIRED_METRIC = "RolloutLabelsPaired"
UNPAIRED_METRIC = "RolloutLabelsUnpaired"
SHADOW_SCORED_METRIC = "ShadowPredictionsScored"
SHADOW_FAILED_METRIC = "ShadowCandidateFailures"


@functools.cache
def service() -> QualityService:
    """Built once per execution environment; a bad setting fails here with the variable's name."""
    return wiring.build_service(QualitySettings.from_env())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    quality = service()
    quality.new_invocation()
    now = datetime.now(UTC)
    records = event.get("Records", [])
    if records and records[0].get("eventSource") == "aws:s3":
        # Asynchronous invocation: a DependencyFailure propagates, and Lambda retries the event.
        capture_records = [
            r for r in records if quality.is_capture_key(str(r.get("s3", {}).get("object", {}).get("key")))
        ]
        if capture_records:
            captured = quality.handle_capture_event(capture_records, now)
            _publish_captures(captured)
            logger.info("Capture objects counted", extra=captured.as_dict())
            if len(capture_records) == len(records):
                return captured.as_dict()
        records = [r for r in records if r not in capture_records]
        report = quality.handle_s3_event(records, now)
        report.add(quality.refresh_quality())
        _publish(report)
        logger.info("Label files processed", extra=report.as_dict())
        return report.as_dict()
    total = Report()
    failures: list[dict[str, str]] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            report = quality.handle_message(str(record.get("body", "")), message_id, now)
        except DependencyFailure as error:
            logger.warning("Feedback message will be retried", extra={"message_id": message_id, "error": error.message})
            failures.append({"itemIdentifier": message_id})
            continue
        total.add(report)
        if report.retry:
            failures.append({"itemIdentifier": message_id})
    total.add(quality.refresh_quality())
    _publish(total)
    logger.info("Labels processed", extra={**total.as_dict(), "retried_messages": len(failures)})
    return {"batchItemFailures": failures}


def _publish(report: Report) -> None:
    for outcome, name in METRIC_NAMES.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=report.outcomes[outcome])
    metrics.add_metric(name=INVALID_METRIC, unit=MetricUnit.Count, value=report.invalid)
    metrics.add_metric(name=DEGRADED_METRIC, unit=MetricUnit.Count, value=report.degraded)
    metrics.add_metric(name=RECOVERED_METRIC, unit=MetricUnit.Count, value=report.recovered)
    metrics.add_metric(name=PAIRED_METRIC, unit=MetricUnit.Count, value=report.paired)
    metrics.add_metric(name=UNPAIRED_METRIC, unit=MetricUnit.Count, value=report.unpaired)


def _publish_captures(report: CaptureReport) -> None:
    metrics.add_metric(name=CAPTURES_METRIC, unit=MetricUnit.Count, value=report.counted)
    metrics.add_metric(name=DRIFT_STARTED_METRIC, unit=MetricUnit.Count, value=report.drift_started)
    metrics.add_metric(name=DRIFT_STOPPED_METRIC, unit=MetricUnit.Count, value=report.drift_stopped)
    metrics.add_metric(name=SHADOW_SCORED_METRIC, unit=MetricUnit.Count, value=report.shadow_scored)
    metrics.add_metric(name=SHADOW_FAILED_METRIC, unit=MetricUnit.Count, value=report.shadow_failed_calls)
