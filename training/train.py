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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.ensemble import RandomForestRegressor

import packed_forest
from house_prices import naming, schema
from packed_forest.evaluation import PERCENTILES, error_metrics
from packed_forest.pack import pack_forest

# The seed's metric lines; SageMaker's MetricDefinitions regex is "AE-at-50th-percentile: ([0-9.]+).*$".
METRIC_LINE = "AE-at-{q}th-percentile: {value:.4f}"
_REQUIRED_PATHS = {"model_dir": "SM_MODEL_DIR", "train": "SM_CHANNEL_TRAIN", "validation": "SM_CHANNEL_VALIDATION"}


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--min-samples-leaf", type=int, default=3)
    parser.add_argument("--model-name", default="house-price-model")
    parser.add_argument("--random-state", type=int, default=None)
    # SageMaker passes hyperparameters as strings ("true"/"false"), so this takes a value, not a bare flag.
    parser.add_argument(
        "--keep-joblib",
        type=_boolean,
        nargs="?",
        const=True,
        default=False,
        help="also write the pickled estimator (model.joblib); never served by default",
    )
    parser.add_argument("--model-dir", default=environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", default=environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", default=environ.get("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--test", default=environ.get("SM_CHANNEL_TEST"))
    args = parser.parse_args(argv)
    for dest, variable in _REQUIRED_PATHS.items():
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

    ``np.loadtxt`` keeps the first line as data; the seed's ``pd.read_csv`` took it as a header and
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


def train(args: argparse.Namespace) -> dict[str, Any]:
    x_train, y_train = load_channel(args.train)
    x_val, y_val = load_channel(args.validation)
    hyperparameters = {
        "n_estimators": args.n_estimators,
        "min_samples_leaf": args.min_samples_leaf,
        "random_state": args.random_state,
    }
    # n_jobs=1: cities train in parallel processes, and a pickled n_jobs=-1 slows one-row predictions.
    model = RandomForestRegressor(**hyperparameters, n_jobs=1)
    model.fit(x_train, y_train)
    # Metrics come from the packed forest, i.e. from exactly what will serve.
    packed = pack_forest(model, schema.FEATURE_NAMES)

    validation = error_metrics(y_val, packed.predict(x_val))
    for q in PERCENTILES:
        print(METRIC_LINE.format(q=q, value=validation[f"ae_p{q}"]))
    metrics: dict[str, Any] = {
        "validation": validation,
        "rows": {"train": len(y_train), "validation": len(y_val), "test": 0},
        "features": list(schema.FEATURE_NAMES),
        "versions": {"sklearn": sklearn.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "model_format": {"name": packed_forest.FORMAT_NAME, "version": packed.format_version},
        "hyperparameters": hyperparameters,
        "model_name": args.model_name,
    }
    if args.test:
        x_test, y_test = load_channel(args.test)
        metrics["test"] = {**error_metrics(y_test, packed.predict(x_test)), "median_price": float(np.median(y_test))}
        metrics["rows"]["test"] = len(y_test)
        print(f"Test-AE-at-50th-percentile: {metrics['test']['ae_p50']:.4f}")

    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    packed_forest.write(model_dir / naming.PACKED_MODEL_FILENAME, packed.arrays)
    if args.keep_joblib:
        import joblib

        joblib.dump(model, model_dir / naming.PICKLED_MODEL_FILENAME)
    (model_dir / naming.METRICS_FILENAME).write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
