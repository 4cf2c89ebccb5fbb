"""Typed settings of the quality function, read once from its environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from house_prices import drift
from house_prices.labels import DEFAULT_RETENTION_DAYS
from house_prices.live_quality import (
    DEFAULT_DEGRADATION,
    DEFAULT_DEGRADED_MIN_COUNT,
    DEFAULT_DEGRADED_RATIO,
    DegradationRule,
)
from house_prices.naming import DEFAULT_PREFIX, KeyLayout
from house_prices.settings import EnvReader

# Firehose delivers a capture up to ~1.5 × its 300 s buffering interval after the prediction; a label
# whose prediction is younger than this and not yet in S3 is retried (queue redelivery), then unknown.
DEFAULT_CAPTURE_WAIT_SECONDS = 900
# Shadow scoring (docs/rollouts.md): one InvokeEndpoint per capture object and shadow city. Its worst case,
# attempts x (connect + read), stays well inside the function's 30 s timeout with the S3 and DynamoDB calls.
DEFAULT_SHADOW_CONNECT_TIMEOUT_SECONDS = 2
DEFAULT_SHADOW_READ_TIMEOUT_SECONDS = 10
DEFAULT_SHADOW_MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class QualitySettings:
    artifact_bucket: str
    layout: KeyLayout
    quality_table: str
    ledger_table: str
    registry_table: str
    feedback_queue_url: str
    house_index_table: str
    retention_days: int = DEFAULT_RETENTION_DAYS
    capture_wait_seconds: int = DEFAULT_CAPTURE_WAIT_SECONDS
    drift_thresholds: drift.Thresholds = drift.DEFAULT_THRESHOLDS
    degradation: DegradationRule = DEFAULT_DEGRADATION
    # The multi-model endpoint shadow rollouts' candidates are scored on; "" leaves them unscored (logged).
    endpoint_name: str = ""
    shadow_connect_timeout_seconds: int = DEFAULT_SHADOW_CONNECT_TIMEOUT_SECONDS
    shadow_read_timeout_seconds: int = DEFAULT_SHADOW_READ_TIMEOUT_SECONDS
    shadow_max_attempts: int = DEFAULT_SHADOW_MAX_ATTEMPTS

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
        house_index_table = env.required("HOUSE_INDEX_TABLE")
        layout = env.parsed("MODEL_PREFIX", KeyLayout, DEFAULT_PREFIX)
        retention_days = env.integer("LABEL_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
        capture_wait_seconds = env.integer("CAPTURE_WAIT_SECONDS", DEFAULT_CAPTURE_WAIT_SECONDS, minimum=0)
        thresholds = drift.Thresholds(
            psi=env.parsed("DRIFT_PSI_THRESHOLD", _positive, str(drift.DEFAULT_PSI_THRESHOLD)),
            js=env.parsed("DRIFT_JS_THRESHOLD", _positive, str(drift.DEFAULT_JS_THRESHOLD)),
            min_count=env.integer("DRIFT_MIN_COUNT", drift.DEFAULT_MIN_COUNT),
        )
        # k of "live error > k × offline" and the labels a version needs before it can be called degraded.
        degradation = DegradationRule(
            ratio=env.parsed("DEGRADED_RATIO", _positive, str(DEFAULT_DEGRADED_RATIO)),
            min_count=env.integer("DEGRADED_MIN_LABELS", DEFAULT_DEGRADED_MIN_COUNT),
        )
        endpoint_name = env.optional("ENDPOINT_NAME", "") or ""
        shadow_connect = env.integer("SHADOW_CONNECT_TIMEOUT_SECONDS", DEFAULT_SHADOW_CONNECT_TIMEOUT_SECONDS)
        shadow_read = env.integer("SHADOW_READ_TIMEOUT_SECONDS", DEFAULT_SHADOW_READ_TIMEOUT_SECONDS)
        shadow_attempts = env.integer("SHADOW_MAX_ATTEMPTS", DEFAULT_SHADOW_MAX_ATTEMPTS)
        env.check("quality")
        return cls(
            artifact_bucket=artifact_bucket,
            layout=layout,
            quality_table=quality_table,
            ledger_table=ledger_table,
            registry_table=registry_table,
            feedback_queue_url=feedback_queue_url,
            house_index_table=house_index_table,
            retention_days=retention_days,
            capture_wait_seconds=capture_wait_seconds,
            drift_thresholds=thresholds,
            degradation=degradation,
            endpoint_name=endpoint_name,
            shadow_connect_timeout_seconds=shadow_connect,
            shadow_read_timeout_seconds=shadow_read,
            shadow_max_attempts=shadow_attempts,
        )


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"must be a positive number, got {text!r}")
    return value
