"""Packed-forest speed against its targets (``TARGETS_US``), interleaved with scikit-learn's own predict.

Trains one notebook city's forest (100 trees, min_samples_leaf=3), packs it, then times — round-robin,
so the machine's drift hits all alike — ``PackedForest.predict`` for 1 and 100 rows, sklearn's
``predict`` on the same rows (n_jobs=1), and ``model_fn`` (load + validate a ``forest.npz``). Prints a
JSON report with medians, the ratio to sklearn, the resident size and each target met or not.

    .venv/bin/python bench/forest_predict.py [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestRegressor

import packed_forest
from house_prices import naming, schema
from packed_forest.pack import pack_forest
from training import data, inference

TARGETS_US = {"predict_1_row": 60.0, "predict_100_rows": 300.0, "model_fn": 2000.0}


def _per_call_us(func: Callable[[], Any], min_seconds: float = 0.2) -> float:
    calls, start = 0, time.perf_counter()
    while True:
        func()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls * 1e6


def run(rounds: int) -> dict[str, Any]:
    city = data.generate_city("Chicago_IL")
    train, val = city.split_rows("train"), city.split_rows("val")
    model = RandomForestRegressor(n_estimators=100, min_samples_leaf=3, n_jobs=1, random_state=0)
    model.fit(train[:, 1:], train[:, 0])
    packed = pack_forest(model, schema.FEATURE_NAMES)
    one, hundred = val[:1, 1:], val[:100, 1:]
    assert np.array_equal(packed.predict(hundred), model.predict(hundred)), "packed forest differs from sklearn"
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(scratch)
        packed_forest.write(model_dir / naming.PACKED_MODEL_FILENAME, packed.arrays)
        cases: dict[str, Callable[[], Any]] = {
            "predict_1_row": lambda: packed.predict(one),
            "predict_100_rows": lambda: packed.predict(hundred),
            "sklearn_1_row": lambda: model.predict(one),
            "sklearn_100_rows": lambda: model.predict(hundred),
            "model_fn": lambda: inference.model_fn(str(model_dir)),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, func in cases.items():
                samples[name].append(_per_call_us(func))
        file_bytes = (model_dir / naming.PACKED_MODEL_FILENAME).stat().st_size
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "trees": packed.n_trees,
        "nodes": packed.n_nodes,
        "resident_bytes": packed.nbytes,
        "file_bytes": file_bytes,
        "median_us": {name: round(value, 1) for name, value in medians.items()},
        "speedup_vs_sklearn": {
            "1_row": round(medians["sklearn_1_row"] / medians["predict_1_row"], 1),
            "100_rows": round(medians["sklearn_100_rows"] / medians["predict_100_rows"], 1),
        },
        "targets_us": TARGETS_US,
        "met": {name: medians[name] <= target for name, target in TARGETS_US.items()},
        "resident_target_met": packed.nbytes <= 600_000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(args.rounds)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
