"""SageMaker script-mode entry point: fit one city's RandomForest and write model + metrics.

Runs as a plain script (``python train.py --n-estimators 100 ...``), the way the SageMaker
scikit-learn container runs it from ``sourcedir.tar.gz``; the ``house_prices`` package travels in
the same archive, so feature names and order come from ``house_prices.schema``, never a copy.

Paths default to the container's environment: ``SM_MODEL_DIR``, ``SM_CHANNEL_TRAIN``,
``SM_CHANNEL_VALIDATION`` and (optional) ``SM_CHANNEL_TEST``.

The model is written as a packed forest (``forest.npz``: node arrays, no pickle; docs/model-format.md),
which any numpy serves identically whatever scikit-learn trained it. ``--keep-joblib`` also writes the
pickled estimator (``model.joblib``) for users who want the object; nothing serves it by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import packed_forest
from house_prices import drift, naming, schema
from packed_forest.evaluation import PERCENTILES, error_metrics

# The notebook's metric lines; SageMaker's MetricDefinitions regex is "AE-at-50th-percentile: ([0-9.]+).*$".
METRIC_LINE = "AE-at-{q}th-percentile: {value:.4f}"
_REQUIRED_PATHS = {"model_dir": "SM_MODEL_DIR", "train": "SM_CHANNEL_TRAIN", "validation": "SM_CHANNEL_VALIDATION"}
# The forest's hyperparameters: declared here, in the script SageMaker runs (it ships alone, so it imports
# nothing of training/), and taken from here by training.inputs.Hyperparameters. The script's own seed is
# scikit-learn's default, unseeded; every job passes one (training.inputs.JOB_RANDOM_STATE or --seed).
DEFAULT_N_ESTIMATORS = 100
DEFAULT_MIN_SAMPLES_LEAF = 3
DEFAULT_RANDOM_STATE = None


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-estimators", type=int, default=DEFAULT_N_ESTIMATORS)
    parser.add_argument("--min-samples-leaf", type=int, default=DEFAULT_MIN_SAMPLES_LEAF)
    parser.add_argument("--model-name", default="house-price-model")
    parser.add_argument("--random-state", type=int, default=DEFAULT_RANDOM_STATE)
    # SageMaker passes hyperparameters as strings ("true"/"false"), so this takes a value, not a bare flag.
    parser.add_argument(
        "--keep-joblib",
        type=_boolean,
        nargs="?",
        const=True,
        default=False,
        help="also write the pickled estimator (model.joblib); never served by default",
    )
    parser.add_argument(
        "--segments",
        type=_boolean,
        nargs="?",
        const=True,
        default=False,
        help=f"train every segment of a shard ({SHARD_ARRAYS} + {SHARD_INDEX} in the train channel)",
    )
    parser.add_argument("--job-name", default=environ.get("TRAINING_JOB_NAME"), help="segments mode: the job")
    parser.add_argument("--artifacts-dir", help="segments mode: write {city}/output/model.tar.gz here")
    parser.add_argument("--artifact-prefix", help="segments mode: upload to {prefix}{city}/{job}/output/model.tar.gz")
    parser.add_argument("--model-dir", default=environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", default=environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", default=environ.get("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--test", default=environ.get("SM_CHANNEL_TEST"))
    args = parser.parse_args(argv)
    required = dict(_REQUIRED_PATHS)
    if args.segments:
        required.pop("validation")
        if not args.job_name:
            parser.error("--job-name is required with --segments (or set TRAINING_JOB_NAME)")
    for dest, variable in required.items():
        if not getattr(args, dest):
            parser.error(f"--{dest.replace('_', '-')} is required (or set {variable})")
    return args


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def load_channel(directory: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read every headerless CSV in a channel directory into (features, price).

    ``np.loadtxt`` keeps the first line as data; the notebook's ``pd.read_csv`` took it as a header and
    silently lost one house per file.
    """
    directory = Path(directory)
    files = sorted(path for path in directory.iterdir() if path.is_file() and path.suffix == ".csv")
    if not files:
        raise ValueError(f"no .csv files in channel directory {directory}")
    blocks = []
    for path in files:
        block = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
        if block.size == 0:
            continue
        if block.shape[1] != len(schema.CSV_COLUMNS):
            raise ValueError(
                f"{path} has {block.shape[1]} columns; expected {len(schema.CSV_COLUMNS)}: "
                f"{', '.join(schema.CSV_COLUMNS)}"
            )
        blocks.append(block)
    if not blocks:
        raise ValueError(f"channel directory {directory} has no rows")
    rows = np.concatenate(blocks)
    return rows[:, 1:], rows[:, 0]


def _hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "n_estimators": args.n_estimators,
        "min_samples_leaf": args.min_samples_leaf,
        "random_state": args.random_state,
    }


def fit_model(
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    hyperparameters: Mapping[str, Any],
    model_name: str,
) -> tuple[Any, Any, dict[str, Any]]:
    """Fit one forest on ``splits["train"]``; metrics come from the packed forest on val (and test, if given).

    Returns (estimator, packed forest, metrics). The metrics are measured on exactly what will serve.
    """
    # Imported here, not at the top: the training CLI imports this module for its shard format and must
    # not pay scikit-learn's ~1 s import for it; the worker pays it once, at its first segment.
    import sklearn
    from sklearn.ensemble import RandomForestRegressor

    from packed_forest.pack import pack_forest

    x_train, y_train = splits["train"]
    x_val, y_val = splits["validation"]
    # n_jobs=1: cities train in parallel processes, and a pickled n_jobs=-1 slows one-row predictions.
    model = RandomForestRegressor(**hyperparameters, n_jobs=1)
    model.fit(x_train, y_train)
    packed = pack_forest(model, schema.FEATURE_NAMES)
    metrics: dict[str, Any] = {
        "validation": error_metrics(y_val, packed.predict(x_val)),
        "rows": {"train": len(y_train), "validation": len(y_val), "test": 0},
        "features": list(schema.FEATURE_NAMES),
        "versions": {"sklearn": sklearn.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "model_format": {"name": packed_forest.FORMAT_NAME, "version": packed.format_version},
        "hyperparameters": dict(hyperparameters),
        "model_name": model_name,
        "reference": reference_distributions(x_train),
    }
    if "test" in splits and len(splits["test"][1]):
        x_test, y_test = splits["test"]
        metrics["test"] = {**error_metrics(y_test, packed.predict(x_test)), "median_price": float(np.median(y_test))}
        metrics["rows"]["test"] = len(y_test)
    return model, packed, metrics


def reference_distributions(features: np.ndarray) -> dict[str, dict[str, list[Any]]]:
    """Per feature, the training rows' decile bin edges (de-duplicated) and counts per bin (docs/quality.md, Drift).

    numpy's linear quantiles and ``searchsorted(side="right")`` are ``house_prices.drift``'s
    ``reference_edges`` and ``bin_of``, vectorised: live counts bin by the same rule.
    """
    references: dict[str, dict[str, list[Any]]] = {}
    features = np.asarray(features, dtype=np.float64)
    # Every column's deciles in one call (the same values as column by column, 5 x faster).
    deciles = np.quantile(features, drift.DECILES, axis=0)
    for column, name in enumerate(schema.FEATURE_NAMES):
        values = features[:, column]
        edges: list[float] = []
        for edge in deciles[:, column]:
            if not edges or float(edge) > edges[-1]:
                edges.append(float(edge))
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
        references[name] = drift.Reference(tuple(edges), tuple(int(c) for c in counts)).to_json()
    return references


def write_model_dir(
    model_dir: Path, packed: Any, metrics: Mapping[str, Any], model: Any = None, keep_joblib: bool = False
) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    packed_forest.write(model_dir / naming.PACKED_MODEL_FILENAME, packed.arrays)
    if keep_joblib:
        import joblib

        joblib.dump(model, model_dir / naming.PICKLED_MODEL_FILENAME)
    (model_dir / naming.METRICS_FILENAME).write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")


def train(args: argparse.Namespace) -> dict[str, Any]:
    splits = {"train": load_channel(args.train), "validation": load_channel(args.validation)}
    if args.test:
        splits["test"] = load_channel(args.test)
    model, packed, metrics = fit_model(splits, _hyperparameters(args), args.model_name)
    for q in PERCENTILES:
        print(METRIC_LINE.format(q=q, value=metrics["validation"][f"ae_p{q}"]))
    if "test" in metrics:
        print(f"Test-AE-at-50th-percentile: {metrics['test']['ae_p50']:.4f}")
    write_model_dir(Path(args.model_dir), packed, metrics, model, args.keep_joblib)
    return metrics


# Segments mode: one process (a local worker or one SageMaker job) trains a shard of many segments.
# The train channel holds SHARD_ARRAYS ("{city}.{split}" -> rows in CSV_COLUMNS order, no pickle) and
# SHARD_INDEX (the segments, in order, with what the caller knows of their data).
SHARD_ARRAYS = "shard.npz"
SHARD_INDEX = "segments.json"
SHARD_REPORT = "report.json"
# Shard mode's log lines for SageMaker MetricDefinitions ("Segments-trained: ([0-9]+)").
SHARD_METRIC_LINE = "Segments-{outcome}: {count}"


def _split_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(schema.CSV_COLUMNS))
    return rows[:, 1:], rows[:, 0]


def _uploader(artifact_prefix: str | None) -> Callable[[Path, str], str] | None:
    """``upload(file, city) -> s3 uri`` under ``{artifact_prefix}{city}/{job}/output/model.tar.gz``."""
    if not artifact_prefix:
        return None
    if not artifact_prefix.startswith("s3://") or "/" not in artifact_prefix[5:]:
        raise ValueError(f"--artifact-prefix must be s3://bucket/prefix/, got {artifact_prefix!r}")
    import boto3  # in every SageMaker training image; only shard jobs that upload need it

    bucket, _, prefix = artifact_prefix[5:].partition("/")
    client = boto3.client("s3")

    def upload(path: Path, key: str) -> str:
        client.upload_file(str(path), bucket, prefix + key)
        return f"s3://{bucket}/{prefix}{key}"

    return upload


def train_shard(args: argparse.Namespace) -> dict[str, Any]:
    """Train every segment of the shard; one failing segment is recorded and never stops the others."""
    import shutil
    import tempfile
    import time
    import traceback

    from house_prices.archives import package_model

    channel = Path(args.train)
    index = json.loads((channel / SHARD_INDEX).read_text())
    job = naming.validate_job(args.job_name)
    upload = _uploader(args.artifact_prefix)
    artifacts_dir = Path(args.artifacts_dir or tempfile.mkdtemp(prefix="segments-"))
    scratch = Path(tempfile.mkdtemp(prefix="segment-models-"))
    outcomes: list[dict[str, Any]] = []
    with np.load(channel / SHARD_ARRAYS, allow_pickle=False) as arrays:
        for segment in index["segments"]:
            started = time.perf_counter()
            city = str(segment.get("city"))
            outcome: dict[str, Any] = {"city": city}
            try:
                naming.validate_city(city)
                splits = {
                    channel_name: _split_rows(arrays[f"{city}.{split}"])
                    for channel_name, split in (("train", "train"), ("validation", "val"), ("test", "test"))
                    if f"{city}.{split}" in arrays.files
                }
                model, packed, metrics = fit_model(splits, _hyperparameters(args), city)
                if segment.get("data"):
                    metrics["data"] = segment["data"]
                model_dir = scratch / city
                write_model_dir(model_dir, packed, metrics, model, args.keep_joblib)
                archive = package_model(model_dir, artifacts_dir / city / "output" / naming.ARTIFACT_FILENAME)
                shutil.rmtree(model_dir, ignore_errors=True)
                key = f"{city}/{job}/output/{naming.ARTIFACT_FILENAME}"
                outcome.update(status="trained", metrics=metrics, artifact=str(archive))
                if upload is not None:
                    outcome["uri"] = upload(archive, key)
                    archive.unlink()
            except Exception as error:  # a segment's failure is data for the report, never the end of the shard
                reason = f"{type(error).__name__}: {error}"
                outcome.update(status="failed", error=reason, traceback=traceback.format_exc())
            outcome["seconds"] = round(time.perf_counter() - started, 4)
            outcomes.append(outcome)
            print(json.dumps({k: v for k, v in outcome.items() if k not in ("metrics", "traceback")}), flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    report = {"job": job, "segments": outcomes}
    counts = {"trained": 0, "failed": 0}
    for outcome in outcomes:
        counts[outcome["status"]] += 1
    for outcome_name, count in counts.items():
        print(SHARD_METRIC_LINE.format(outcome=outcome_name, count=count))
    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / SHARD_REPORT).write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.segments:
        report = train_shard(args)
        # A shard fails only when nothing in it trained; per-segment failures are in its report.
        return 0 if any(s["status"] == "trained" for s in report["segments"]) or not report["segments"] else 1
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
