"""Drift target: a 0.5 σ shift of one feature flagged within 500 predictions, ≤ 5 % of unshifted cities.

Fixed seed. For each of ``--cities`` synthetic cities (``training.data.generate_city``) the reference is
built from the city's training rows exactly as ``training/train.py`` builds it (``house_prices.drift``);
live traffic is fresh houses of the same city from another seed, arriving one by one. Half the cities
are left as they are; in the other half one feature (each feature in turn) is shifted by 0.5 × its
training standard deviation. Every ``--step`` predictions from ``--min-count`` up to ``--horizon`` the
city is checked with the default thresholds (PSI 0.2, JS distance 0.1, minimum sample 400).

Reported: shifted cities flagged by the horizon (and the median predictions needed), per feature; unshifted
cities flagged at the horizon and at any check up to it (the stricter figure, since a dashboard checks
continuously). The target counts as met when every shifted city is flagged by the horizon and at most 5 %
of unshifted cities are flagged at it; exit status 1 otherwise.

    .venv/bin/python bench/drift_simulation.py [--cities 400] [--seed 17] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from house_prices import drift, schema
from training import data

SHIFT_SIGMAS = 0.5


def shifted_values(live: np.ndarray, train: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``live`` moved by 0.5 × the training standard deviation, staying on the feature's grid.

    A discrete feature (bedrooms, bathrooms by halves, garage spaces) cannot take 2.7 bedrooms: its values
    move by whole grid steps, a fraction of them one step further (stochastic rounding), so the mean
    moves by exactly the shift and every value stays valid. A continuous feature is simply shifted.
    """
    shift = SHIFT_SIGMAS * float(np.std(train))
    distinct = np.unique(train)
    if len(distinct) > 20:
        return live + shift
    grid = float(np.min(np.diff(distinct)))
    whole, fraction = divmod(shift / grid, 1.0)
    return live + grid * (whole + (rng.random(len(live)) < fraction))


def simulate(
    cities: int, seed: int, horizon: int, step: int, thresholds: drift.Thresholds, bins: int = 10
) -> dict[str, Any]:
    quantiles = tuple(k / bins for k in range(1, bins))
    names = [f"City{index:04d}_XX" for index in range(cities)]
    checkpoints = list(range(thresholds.min_count, horizon + 1, step))
    rng = np.random.default_rng(seed)
    shifted: list[dict[str, Any]] = []
    unshifted: list[dict[str, Any]] = []
    for index, city in enumerate(names):
        city_data = data.generate_city(city, seed=seed)
        train = city_data.rows[city_data.splits["train"], 1:]
        references = {
            name: drift.build_reference(train[:, j].tolist(), quantiles) for j, name in enumerate(schema.FEATURE_NAMES)
        }
        live = data.generate_houses(city, horizon, seed=seed + 1 + index)[:, 1:].copy()
        feature = None
        if index % 2 == 1:
            column = (index // 2) % len(schema.FEATURE_NAMES)
            feature = schema.FEATURE_NAMES[column]
            live[:, column] = shifted_values(live[:, column], train[:, column], rng)
        first = None
        flagged_at_horizon = False
        worst: dict[str, float] = {}
        for n in checkpoints:
            counts = {
                name: drift.bin_counts(live[:n, j].tolist(), references[name].edges)
                for j, name in enumerate(schema.FEATURE_NAMES)
            }
            report = drift.drift_report(references, counts, thresholds)
            if report.drifting and first is None:
                first = n
            if n == checkpoints[-1]:
                flagged_at_horizon = report.drifting
                worst = {"psi": max(f.psi for f in report.features), "js": max(f.js for f in report.features)}
        outcome = {"city": city, "feature": feature, "first_flagged": first, "at_horizon": flagged_at_horizon, **worst}
        (shifted if feature else unshifted).append(outcome)
    return {"shifted": shifted, "unshifted": unshifted, "checkpoints": checkpoints}


def summarise(result: dict[str, Any], horizon: int) -> dict[str, Any]:
    shifted, unshifted = result["shifted"], result["unshifted"]
    per_feature = {}
    for name in schema.FEATURE_NAMES:
        rows = [r for r in shifted if r["feature"] == name]
        found = [r["first_flagged"] for r in rows if r["first_flagged"] is not None]
        per_feature[name] = {
            "cities": len(rows),
            "flagged": len(found),
            "median_predictions": statistics.median(found) if found else None,
        }
    detected = sum(1 for r in shifted if r["first_flagged"] is not None)
    false_any = sum(1 for r in unshifted if r["first_flagged"] is not None)
    false_end = sum(1 for r in unshifted if r["at_horizon"])
    return {
        "horizon": horizon,
        "shifted_cities": len(shifted),
        "shifted_flagged": detected,
        "shifted_flagged_rate": detected / len(shifted) if shifted else None,
        "per_feature": per_feature,
        "unshifted_cities": len(unshifted),
        "unshifted_flagged_at_horizon": false_end,
        "unshifted_flagged_any_check": false_any,
        "false_positive_rate_at_horizon": false_end / len(unshifted) if unshifted else None,
        "false_positive_rate_any_check": false_any / len(unshifted) if unshifted else None,
        "unshifted_max_psi_p95": float(np.percentile([r["psi"] for r in unshifted], 95)) if unshifted else None,
        "unshifted_max_js_p95": float(np.percentile([r["js"] for r in unshifted], 95)) if unshifted else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", type=int, default=400, help="half of them shifted")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--horizon", type=int, default=500)
    parser.add_argument("--step", type=int, default=50)
    parser.add_argument("--psi", type=float, default=drift.DEFAULT_PSI_THRESHOLD)
    parser.add_argument("--js", type=float, default=drift.DEFAULT_JS_THRESHOLD)
    parser.add_argument("--min-count", type=int, default=drift.DEFAULT_MIN_COUNT)
    parser.add_argument("--bins", type=int, default=len(drift.DECILES) + 1, help="quantile bins of the reference")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    thresholds = drift.Thresholds(psi=args.psi, js=args.js, min_count=args.min_count)
    summary = summarise(simulate(args.cities, args.seed, args.horizon, args.step, thresholds, args.bins), args.horizon)
    met = (summary["shifted_flagged_rate"] or 0) >= 1.0 and (summary["false_positive_rate_at_horizon"] or 0) <= 0.05
    summary["target_met"] = met
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        s = summary
        print(f"shifted by {SHIFT_SIGMAS} σ: {s['shifted_flagged']}/{s['shifted_cities']} flagged by {args.horizon}")
        for name, row in s["per_feature"].items():
            median = row["median_predictions"]
            print(f"  {name:14} {row['flagged']}/{row['cities']} flagged, median at {median} predictions")
        print(
            f"unshifted: {s['unshifted_flagged_at_horizon']}/{s['unshifted_cities']} flagged at {args.horizon}, "
            f"{s['unshifted_flagged_any_check']} at any check; p95 of max PSI {s['unshifted_max_psi_p95']:.4f}, "
            f"of max JS {s['unshifted_max_js_p95']:.4f}"
        )
        print("target met" if met else "target MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
