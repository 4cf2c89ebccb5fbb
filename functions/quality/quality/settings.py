"""Typed settings of the quality function, read once from its environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from house_prices import drift
from house_prices.labels import DEFAULT_RETENTION_DAYS
from house_prices.naming import DEFAULT_PREFIX, KeyLayout
from house_prices.settings import EnvReader

# Firehose delivers a capture up to ~1.5 × its 300 s buffering interval after the prediction; a label
# whose prediction is younger than this and not yet in S3 is retried (queue redelivery), then unknown.
DEFAULT_CAPTURE_WAIT_SECONDS = 900


@dataclass(frozen=True)
class QualitySettings:
    artifact_bucket: str
    layout: KeyLayout
    quality_table: str
    ledger_table: str
    registry_table: str
    feedback_queue_url: str
    retention_days: int = DEFAULT_RETENTION_DAYS
    capture_wait_seconds: int = DEFAULT_CAPTURE_WAIT_SECONDS
    drift_thresholds: drift.Thresholds = drift.DEFAULT_THRESHOLDS

    @property
    def capture_wait(self) -> timedelta:
        return timedelta(seconds=self.capture_wait_seconds)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QualitySettings:
        """One SettingsError naming every bad variable, at initialisation rather than on the first message."""
        env = EnvReader(environ)
        artifact_bucket = env.required("ARTIFACT_BUCKET")
        quality_table = env.required("QUALITY_TABLE")
        ledger_table = env.required("LABEL_LEDGER_TABLE")
        registry_table = env.required("REGISTRY_TABLE")
        feedback_queue_url = env.required("FEEDBACK_QUEUE_URL")
        layout = env.parsed("MODEL_PREFIX", KeyLayout, DEFAULT_PREFIX)
        retention_days = env.integer("LABEL_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
        capture_wait_seconds = env.integer("CAPTURE_WAIT_SECONDS", DEFAULT_CAPTURE_WAIT_SECONDS, minimum=0)
        thresholds = drift.Thresholds(
            psi=env.parsed("DRIFT_PSI_THRESHOLD", _positive, str(drift.DEFAULT_PSI_THRESHOLD)),
            js=env.parsed("DRIFT_JS_THRESHOLD", _positive, str(drift.DEFAULT_JS_THRESHOLD)),
            min_count=env.integer("DRIFT_MIN_COUNT", drift.DEFAULT_MIN_COUNT),
        )
        env.check("quality")
        return cls(
            artifact_bucket=artifact_bucket,
            layout=layout,
            quality_table=quality_table,
            ledger_table=ledger_table,
            registry_table=registry_table,
            feedback_queue_url=feedback_queue_url,
            retention_days=retention_days,
            capture_wait_seconds=capture_wait_seconds,
            drift_thresholds=thresholds,
        )


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"must be a positive number, got {text!r}")
    return value
