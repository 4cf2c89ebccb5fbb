"""City names, bucket key layout and versioned artifact names — built and parsed only here.

Layout (``PREFIX`` defaults to the notebook's ``DEMO_MME_SCIKIT_V1``)::

    PREFIX/model_prep/{city}/{train,val,test}/{city}_{split}.csv   training inputs
    PREFIX/model_artifacts/{city}/{job}/output/model.tar.gz         training outputs -> model-sync
    PREFIX/multi_model_artifacts/{city}.{version}.tar.gz            MME prefix (immutable)
    PREFIX/code/sourcedir-{sha256[:12]}.tar.gz                      train.py + inference.py + house_prices
    PREFIX/captures/city={city}/date={YYYY-MM-DD}/*.jsonl.gz        captured predictions (Firehose; docs/quality.md)
    PREFIX/capture_errors/{error type}/{YYYY-MM-DD}/                what Firehose could not partition or deliver
    PREFIX/shadow_captures/city={city}/date={YYYY-MM-DD}/*.jsonl.gz shadow rollouts' candidate prices (docs/rollouts.md)

The trigger prefix (``model_artifacts/``) and the write prefix (``multi_model_artifacts/``) are
disjoint, so model-sync can never trigger itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from urllib.parse import unquote_plus

from house_prices.errors import InvalidCityName, InvalidVersion, NotAModelKey

DEFAULT_PREFIX = "DEMO_MME_SCIKIT_V1"
PREP_DIR = "model_prep"
TRAINING_OUTPUT_DIR = "model_artifacts"
MME_DIR = "multi_model_artifacts"
CODE_DIR = "code"
# Segments-mode training: each job's shard of inputs, and the jobs' own outputs (their shard reports).
# Both stay outside TRAINING_OUTPUT_DIR, whose model.tar.gz objects trigger model-sync.
TRAINING_INPUTS_DIR = "training_inputs"
TRAINING_JOBS_DIR = "training_jobs"
# Captured predictions, partitioned by city and UTC date (Hive style, so Athena and Glue see two columns).
CAPTURES_DIR = "captures"
CAPTURE_ERRORS_DIR = "capture_errors"
# A shadow rollout's candidate prices of captured predictions, written by the quality function per capture
# object (one object per source object and partition: a redelivery rewrites the same key), read when labels join.
SHADOW_CAPTURES_DIR = "shadow_captures"
_SHADOW_SUFFIXES = (".gz", ".jsonl", ".json")
# bulk late labels (CSV or JSON lines) dropped by callers; the quality function ingests them (docs/quality.md)
LABELS_DIR = "labels"
ARTIFACT_FILENAME = "model.tar.gz"
SPLITS = ("train", "val", "test")

# Files at the root of model.tar.gz (SageMaker packs SM_MODEL_DIR's contents there). The packed forest
# (``packed_forest``; docs/model-format.md) is what serves; a pickle is only there if the user asked.
PACKED_MODEL_FILENAME = "forest.npz"
PICKLED_MODEL_FILENAME = "model.joblib"
METRICS_FILENAME = "metrics.json"
REQUIRED_ARTIFACT_FILES = (PACKED_MODEL_FILENAME, METRICS_FILENAME)

CITY_PATTERN = r"[A-Za-z][A-Za-z0-9_-]{0,63}"
_CITY = re.compile(CITY_PATTERN)
# SageMaker's name rule (EndpointName, and the other resource names), as its service model states it and a
# ValidationError quotes it; the length limit is a separate constraint there, and here.
SAGEMAKER_NAME_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9])*"
SAGEMAKER_NAME_MAX_LENGTH = 63
_SAGEMAKER_NAME = re.compile(SAGEMAKER_NAME_PATTERN)
# SageMaker's own TrainingJobName pattern: the rule above with the length folded into the letter count
# (looser than it for names with many dashes; kept as it is, since tightening it would reject names it admits).
_JOB = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
VERSION_PATTERN = r"(?P<stamp>\d{8}T\d{6}Z)-(?P<digest>[0-9a-f]{8})"
_VERSION = re.compile(VERSION_PATTERN)
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_PREFIX = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def validate_city(city: object, field: str = "city") -> str:
    if not isinstance(city, str) or not _CITY.fullmatch(city):
        raise InvalidCityName(city, CITY_PATTERN, field)
    return city


def is_valid_city(city: object) -> bool:
    return isinstance(city, str) and _CITY.fullmatch(city) is not None


def validate_version(version: object, field: str = "version") -> str:
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise InvalidVersion(version, field)
    return version


def validate_prefix(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix) or ".." in prefix.split("/"):
        raise ValueError(f"Invalid key prefix: {prefix!r}")
    return prefix


def make_version(created_at: datetime, sha256_hex: str) -> str:
    """A unique, sortable version: the artifact's UTC creation second plus a content digest.

    Both inputs come from the source object, so a redelivered S3 event derives the same version.
    """
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    digest = sha256_hex.lower()[:8]
    if not re.fullmatch(r"[0-9a-f]{8}", digest):
        raise ValueError("sha256_hex must be a hex digest")
    return f"{created_at.astimezone(timezone.utc).strftime(_TIMESTAMP_FORMAT)}-{digest}"


@dataclass(frozen=True)
class KeyLayout:
    """Every S3 key this project reads or writes, for one ``prefix``."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    # training inputs; a SageMaker channel is the S3Prefix of one split
    def prep_split_prefix(self, city: str, split: str) -> str:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return f"{self.prefix}/{PREP_DIR}/{validate_city(city)}/{split}/"

    def prep_key(self, city: str, split: str) -> str:
        return f"{self.prep_split_prefix(city, split)}{city}_{split}.csv"

    # training outputs; SageMaker's S3OutputPath is the city prefix, below which it writes {job}/output/
    @property
    def training_output_prefix(self) -> str:
        return f"{self.prefix}/{TRAINING_OUTPUT_DIR}/"

    def training_output_city_prefix(self, city: str) -> str:
        return f"{self.training_output_prefix}{validate_city(city)}/"

    def training_output_key(self, city: str, job: str) -> str:
        return f"{self.training_output_city_prefix(city)}{validate_job(job)}/output/{ARTIFACT_FILENAME}"

    def parse_training_output_key(self, raw_key: str) -> TrainingOutput:
        """Parse a (possibly URL-encoded, as in S3 events) key into city and job.

        Raises NotAModelKey for anything that is not exactly a training output of a valid city.
        """
        key = unquote_plus(raw_key)
        if not key.startswith(self.training_output_prefix):
            raise NotAModelKey(f"{key!r} is not under {self.training_output_prefix!r}")
        parts = key[len(self.training_output_prefix) :].split("/")
        if len(parts) != 4 or parts[2:] != ["output", ARTIFACT_FILENAME]:
            raise NotAModelKey(f"{key!r} is not {{city}}/{{job}}/output/{ARTIFACT_FILENAME}")
        city, job = parts[0], parts[1]
        if not is_valid_city(city):
            raise NotAModelKey(f"{key!r} has an invalid city name {city!r}")
        if not _JOB.fullmatch(job):
            raise NotAModelKey(f"{key!r} has an invalid job name {job!r}")
        return TrainingOutput(city=city, job=job, key=key)

    # segments-mode training: a job's shard (its train channel), the jobs' outputs, what each segment last trained on
    def shard_input_prefix(self, job: str) -> str:
        return f"{self.prefix}/{TRAINING_INPUTS_DIR}/{validate_job(job)}/"

    @property
    def training_jobs_prefix(self) -> str:
        return f"{self.prefix}/{TRAINING_JOBS_DIR}/"

    @property
    def training_manifest_key(self) -> str:
        return f"{self.prefix}/{TRAINING_INPUTS_DIR}/manifest.json"

    # serving/training code (SAGEMAKER_SUBMIT_DIRECTORY); content-addressed, outside the trigger prefix
    def sourcedir_key(self, sha256_hex: str) -> str:
        digest = sha256_hex.lower()[:12]
        if not re.fullmatch(r"[0-9a-f]{6,12}", digest):
            raise ValueError("sha256_hex must be a hex digest")
        return f"{self.prefix}/{CODE_DIR}/sourcedir-{digest}.tar.gz"

    # multi-model endpoint artifacts
    @property
    def mme_prefix(self) -> str:
        return f"{self.prefix}/{MME_DIR}/"

    def mme_key(self, city: str, version: str) -> str:
        return f"{self.mme_prefix}{target_model(city, version)}"

    def model_data_url(self, bucket: str) -> str:
        return f"s3://{bucket}/{self.mme_prefix}"

    # prediction captures: the router's capture log lines, delivered by Firehose (template.yaml, local/log_delivery.py)
    @property
    def captures_prefix(self) -> str:
        return f"{self.prefix}/{CAPTURES_DIR}/"

    def capture_prefix(self, city: str, day: str | date) -> str:
        """Where the predictions of ``city`` made on UTC ``day`` (``YYYY-MM-DD``) are delivered."""
        return f"{self.captures_prefix}city={validate_city(city)}/date={capture_date(day)}/"

    # shadow scoring (docs/rollouts.md, "Shadow scoring"): the same partitions as the captures they price
    @property
    def shadow_captures_prefix(self) -> str:
        return f"{self.prefix}/{SHADOW_CAPTURES_DIR}/"

    def shadow_prefix(self, city: str, day: str | date) -> str:
        """Where the shadow records of ``city``'s predictions made on UTC ``day`` are written."""
        return f"{self.shadow_captures_prefix}city={validate_city(city)}/date={capture_date(day)}/"

    def shadow_key(self, city: str, day: str | date, source_key: str) -> str:
        """The shadow records of one capture object's predictions of (city, day): named after the source
        object, so scoring the same object again (a redelivered S3 event) rewrites the same key."""
        name = unquote_plus(source_key).rstrip("/").rpartition("/")[2]
        for suffix in _SHADOW_SUFFIXES:
            name = name.removesuffix(suffix)
        if not name:
            raise ValueError(f"a capture object key names a file, got {source_key!r}")
        return f"{self.shadow_prefix(city, day)}{name}.jsonl.gz"

    @property
    def capture_errors_prefix(self) -> str:
        return f"{self.prefix}/{CAPTURE_ERRORS_DIR}/"

    @property
    def labels_prefix(self) -> str:
        return f"{self.prefix}/{LABELS_DIR}/"


@dataclass(frozen=True)
class TrainingOutput:
    city: str
    job: str
    key: str


def capture_date(day: str | date) -> str:
    """A capture partition's date, ``YYYY-MM-DD`` (a real calendar day)."""
    text = day.isoformat() if isinstance(day, date) and not isinstance(day, datetime) else day
    if not isinstance(text, str) or not _DATE.fullmatch(text):
        raise ValueError(f"a capture date is YYYY-MM-DD, got {day!r}")
    date.fromisoformat(text)  # ValueError for 2026-02-30
    return text


def is_valid_sagemaker_name(name: str) -> bool:
    return len(name) <= SAGEMAKER_NAME_MAX_LENGTH and _SAGEMAKER_NAME.fullmatch(name) is not None


def validate_job(job: str) -> str:
    if not _JOB.fullmatch(job):
        raise ValueError(f"Invalid training job name: {job!r}")
    return job


def target_model(city: str, version: str) -> str:
    """The TargetModel for InvokeEndpoint: a flat name relative to the MME prefix."""
    return f"{validate_city(city)}.{validate_version(version)}.tar.gz"


def shard_job_name(index: int, now: datetime | None = None) -> str:
    """The training job of shard ``index`` of a segments run started at ``now`` (unique to the millisecond)."""
    if not 0 <= index < 100_000:
        raise ValueError(f"shard index must be in 0..99999, got {index}")
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return validate_job(f"segments-{now.strftime('%Y%m%d-%H%M%S')}-{now.microsecond // 1000:03d}-{index:05d}")


def job_name(city: str, now: datetime | None = None) -> str:
    """A SageMaker-valid training job name for ``city``, unique to the millisecond."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    base = validate_city(city).replace("_", "-")[:40].strip("-")
    return validate_job(f"{base}-{now.strftime('%Y%m%d-%H%M%S')}-{now.microsecond // 1000:03d}")
