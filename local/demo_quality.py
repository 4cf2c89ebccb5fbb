"""``make demo-quality``: the quality loop of docs/quality.md finding a drifting city and a worse model.

1. start the local stack (capture buffered 1 s instead of 300 s, so captures reach S3 within seconds);
2. train and publish a few synthetic cities through the normal path; one of them (``WORSE_CITY``) is trained
   on mislabelled prices (every sale recorded at ``MISLABEL_FACTOR`` of its price), so it validates well
   offline, passes the gate (its first version) and errs live;
3. replay traffic through the HTTP API, batched; one city's inputs (``DRIFTED_CITY``) have SQUARE_FEET
   shifted by ``SHIFT_SIGMAS`` of its training standard deviation;
4. wait until QualityFunction has counted every captured prediction for drift;
5. the simulated clock moves on a day: the houses sell at the synthetic price formula
   (``training.data.price_of``), ``sold_at`` the day after the prediction; most labels arrive as a file
   under ``labels/``, the rest through ``POST /feedback``;
6. wait for the aggregates, then print what ``python -m ops quality`` and ``ops quality --drift`` show.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console

from house_prices import drift, ids, schema
from house_prices.live_quality import summary_from_item
from house_prices.naming import KeyLayout
from house_prices.registry import ModelRegistry
from local.demo import _stack_running, wait_for_live
from local.stack import DEFAULT_STATE_DIR, LocalStack, StackConfig, print_banner
from ops import quality as ops_quality
from ops import tables
from training.report import make_console

# Names outside the notebook cities, so the demo's core can share a stack with other suites' cities.
DEMO_CITIES = ("Austin_TX", "Denver_CO", "Boston_MA", "Miami_FL")
DRIFTED_CITY = "Denver_CO"
WORSE_CITY = "Boston_MA"
SHIFT_SIGMAS = 0.75
MISLABEL_FACTOR = 0.6
# Seeds disjoint from training (42): the replayed houses are new to the models. Sampling noise alone flags
# ~2.5 % of unshifted cities at 500 predictions (docs/quality.md); with this seed it flags none of the demo's.
TRAFFIC_SEED = 3025
PREDICTIONS_PER_CITY = 500  # above DRIFT_MIN_COUNT (400)
LABELS_PER_CITY = 200
FEEDBACK_SHARE = 0.25  # of each city's labels sent through POST /feedback; the rest in one labels/ file
N_ESTIMATORS = 20


@dataclass(frozen=True)
class Priced:
    city: str
    version: str
    house: Mapping[str, float]
    prediction_id: str
    price: float


@dataclass
class QualityDemoResult:
    versions: dict[str, str]
    quality: list[dict[str, Any]]  # ops quality's rows, worst first
    drifting: list[dict[str, Any]]  # ops quality --drift's rows
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        drifting = [{k: v for k, v in row.items() if k != "drift"} for row in self.drifting]
        return {"versions": self.versions, "quality": self.quality, "drifting": drifting, "seconds": self.timings}


def mislabelled_segment(city: str, factor: float, houses: int = schema.HOUSES_PER_CITY) -> Any:
    """A synthetic city whose every recorded price is ``factor`` × the true one (train, validation and test)."""
    from training import data
    from training.shards import SegmentInput, rows_hash

    clean = data.generate_city(city, houses, data.DEFAULT_SEED)
    rows = clean.rows.copy()
    rows[:, 0] = np.trunc(rows[:, 0] * factor)
    return SegmentInput(
        data=data.CityData(city=city, rows=rows, splits=clean.splits),
        data_hash=rows_hash(rows),
        details={"synthetic_seed": data.DEFAULT_SEED, "mislabelled_price_factor": factor},
    )


def train_and_publish_demo_cities(
    stack: LocalStack, cities: Sequence[str], worse_city: str, work_dir: Path, console: Console, n_estimators: int
) -> None:
    """Train every city (``worse_city`` on mislabelled prices) and publish them like ``make demo`` does."""
    factors = {city: MISLABEL_FACTOR if city == worse_city else 1.0 for city in cities}
    train_and_publish(stack, factors, work_dir, console, n_estimators)


def train_and_publish(
    stack: LocalStack, price_factors: Mapping[str, float], work_dir: Path, console: Console, n_estimators: int
) -> None:
    """Train each city on prices recorded at its factor (1.0: the right prices) and publish like a training job."""
    from training import data
    from training.inputs import Hyperparameters
    from training.local_runs import train_segments
    from training.publishing import S3Publisher, publish_local_run
    from training.shards import synthetic_segment

    segments = [
        synthetic_segment(city, schema.HOUSES_PER_CITY, data.DEFAULT_SEED)
        if factor == 1.0
        else mislabelled_segment(city, factor)
        for city, factor in price_factors.items()
    ]
    report = train_segments(
        segments, work_dir, hyperparameters=Hyperparameters(n_estimators=n_estimators), progress=False, console=console
    )
    report.raise_for_failures()
    publish_local_run(S3Publisher(stack.client("s3"), stack.info.bucket, KeyLayout(stack.info.prefix)), report)


def traffic(city: str, n: int, seed: int, shift_sigmas: float = 0.0) -> list[dict[str, float]]:
    """``n`` fresh houses of ``city``; SQUARE_FEET moved by ``shift_sigmas`` × its training standard deviation."""
    from training import data

    rows = data.generate_houses(city, n, seed)
    if shift_sigmas:
        column = schema.CSV_COLUMNS.index("SQUARE_FEET")
        sigma = float(np.std(data.generate_houses(city, schema.HOUSES_PER_CITY, data.DEFAULT_SEED)[:, column]))
        rows[:, column] = rows[:, column] + round(shift_sigmas * sigma)
    return [schema.house_from_row(row) for row in rows[:, 1:]]


def sale_price(house: Mapping[str, float]) -> float:
    """The price the synthetic market sells ``house`` at (the generator's formula, no noise)."""
    from training.data import price_of

    arrays = {name.lower(): np.asarray([house[name]], dtype=np.float64) for name in schema.FEATURE_NAMES}
    return float(price_of(**arrays)[0])


def price_all(http: httpx.Client, api_url: str, city: str, houses: Sequence[Mapping[str, float]]) -> list[Priced]:
    """Price ``houses`` through the HTTP API, ``DEFAULT_MAX_HOUSES_PER_REQUEST`` per request."""
    priced: list[Priced] = []
    step = schema.DEFAULT_MAX_HOUSES_PER_REQUEST
    for start in range(0, len(houses), step):
        batch = list(houses[start : start + step])
        response = http.post(f"{api_url}/locations/{city}/predictions", json={"houses": batch})
        if response.status_code != 200:
            raise RuntimeError(f"{city}: HTTP {response.status_code}: {response.text[:500]}")
        body = response.json()
        for house, prediction in zip(batch, body["predictions"], strict=True):
            priced.append(
                Priced(city, body["model"]["version"], house, prediction["prediction_id"], prediction["price"])
            )
    return priced


def label_of(priced: Priced) -> dict[str, Any]:
    """The sale of a priced house, the day after the prediction (the simulated clock)."""
    predicted_at = ids.parse_prediction_id(priced.prediction_id).timestamp
    sold_at = (predicted_at + timedelta(days=1)).date().isoformat()
    return {"prediction_id": priced.prediction_id, "sale_price": sale_price(priced.house), "sold_at": sold_at}


def labels_csv(labels: Sequence[Mapping[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["prediction_id", "sale_price", "sold_at"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(labels)
    return out.getvalue().encode()


def quality_table(stack: LocalStack) -> str:
    """The quality table beside the registry table (the rule ``ops quality`` falls back to)."""
    return stack.info.registry_table.removesuffix("-RegistryTable") + "-QualityTable"


def wait_for_items(
    stack: LocalStack,
    versions: Mapping[str, str],
    ready: Callable[[Mapping[str, Any]], bool],
    what: str,
    timeout: float,
) -> list[dict[str, Any]]:
    """Poll the quality table until ``ready(item)`` holds for each city's version; return every item."""
    dynamodb, table = stack.client("dynamodb"), quality_table(stack)
    deadline, waiting = time.monotonic() + timeout, sorted(versions)
    while True:
        items = ops_quality.read_items(dynamodb, table)
        by_key = {(i["city"]["S"], i["version"]["S"]): i for i in items}
        waiting = [c for c in versions if not ((item := by_key.get((c, versions[c]))) is not None and ready(item))]
        if not waiting:
            return items
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not there within {timeout:.0f} s: {', '.join(waiting)}")
        time.sleep(0.5)


def labelled(expected: Mapping[str, int]) -> Callable[[Mapping[str, Any]], bool]:
    """Whether a quality item counts at least its city's ``expected`` labels."""
    return lambda item: int(item.get("n", {}).get("N", "0")) >= expected[item["city"]["S"]]


def run_quality_demo(
    stack: LocalStack,
    work_dir: Path,
    console: Console,
    *,
    cities: Sequence[str] = DEMO_CITIES,
    predictions_per_city: int = PREDICTIONS_PER_CITY,
    labels_per_city: int = LABELS_PER_CITY,
    n_estimators: int = N_ESTIMATORS,
    timeout: float = 90.0,
) -> QualityDemoResult:
    """The demo's core on a running stack (capture buffered briefly, router cache off): see the module doc."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    registry = ModelRegistry(stack.client("dynamodb"), stack.info.registry_table)
    layout = KeyLayout(stack.info.prefix)

    console.rule(
        f"1. train {len(cities)} cities ({WORSE_CITY} on prices recorded at {MISLABEL_FACTOR:.0%}) and publish"
    )
    train_and_publish_demo_cities(stack, cities, WORSE_CITY, work_dir, console, n_estimators)
    live = wait_for_live(registry, cities, console, timeout=timeout)
    versions = {city: live[city].version for city in cities}
    timings["trained_and_live"] = time.perf_counter() - started

    console.rule(
        f"2. replay {predictions_per_city} predictions per city ({DRIFTED_CITY}: SQUARE_FEET +{SHIFT_SIGMAS} σ)"
    )
    priced: dict[str, list[Priced]] = {}
    with httpx.Client(timeout=60) as http:
        for index, city in enumerate(cities):
            shift = SHIFT_SIGMAS if city == DRIFTED_CITY else 0.0
            priced[city] = price_all(
                http, stack.info.api_url, city, traffic(city, predictions_per_city, TRAFFIC_SEED + index, shift)
            )
            # A version pinned by the router's cache would not be the one counted below.
            versions[city] = priced[city][0].version
        timings["priced"] = time.perf_counter() - started

        console.rule("3. captures → S3 → QualityFunction: drift counts per (city, version)")
        wait_for_items(
            stack,
            versions,
            lambda item: int((drift.report_from_item(item) or {}).get("count", 0)) >= predictions_per_city,
            "drift reports",
            timeout,
        )
        timings["drift_counted"] = time.perf_counter() - started

        console.rule(
            f"4. a day later the houses sell: {labels_per_city} labels per city, a labels/ file and POST /feedback"
        )
        labels = {city: [label_of(p) for p in priced[city][:labels_per_city]] for city in cities}
        posted = {city: round(len(labels[city]) * FEEDBACK_SHARE) for city in cities}
        bulk = [label for city in cities for label in labels[city][posted[city] :]]
        key = f"{layout.labels_prefix}demo-quality-{int(time.time())}.csv"
        stack.client("s3").put_object(Bucket=stack.info.bucket, Key=key, Body=labels_csv(bulk))
        console.print(f"{len(bulk)} labels in s3://{stack.info.bucket}/{key}", highlight=False)
        # The file first, then the stragglers: the local DynamoDB (moto) is not transactional under concurrent
        # updates of one item, so the two label paths never write the same (city, version) at once here.
        in_file = {city: len(labels[city]) - posted[city] for city in cities}
        wait_for_items(stack, versions, labelled(in_file), "the label file's aggregates", timeout)
        timings["file_labels_counted"] = time.perf_counter() - started
        for city in cities:
            response = http.post(f"{stack.info.api_url}/feedback", json={"labels": labels[city][: posted[city]]})
            if response.status_code != 202:
                raise RuntimeError(f"POST /feedback: HTTP {response.status_code}: {response.text[:500]}")
        console.print(f"{sum(posted.values())} labels through POST /feedback", highlight=False)
        expected = {city: len(labels[city]) for city in cities}
        items = wait_for_items(stack, versions, labelled(expected), "label aggregates", timeout)
        timings["labels_counted"] = time.perf_counter() - started

    ours = [i for i in items if versions.get(i["city"]["S"]) == i["version"]["S"]]
    summaries = ops_quality.worst_first([summary_from_item(i) for i in ours])
    result = QualityDemoResult(versions, ops_quality.rows(summaries), ops_quality.drifting(ours), timings)
    console.rule("5. python -m ops quality")
    tables.print_rows(console, result.quality, ops_quality.COLUMNS, "Live quality, worst first")
    console.rule("6. python -m ops quality --drift")
    tables.print_rows(console, result.drifting, ops_quality.DRIFT_COLUMNS, "Drifting cities, worst first")
    return result


def verdict(result: QualityDemoResult) -> list[str]:
    """What the demo should find; an empty list when it found it."""
    problems = []
    if not result.quality or result.quality[0]["city"] != WORSE_CITY:
        problems.append(f"{WORSE_CITY} is not the worst live vs offline: {result.quality[:1]}")
    if [row["city"] for row in result.drifting] != [DRIFTED_CITY]:
        problems.append(f"drifting cities are {[row['city'] for row in result.drifting]}, expected [{DRIFTED_CITY}]")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo-quality", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--predictions", type=int, default=PREDICTIONS_PER_CITY, help="per city")
    parser.add_argument("--labels", type=int, default=LABELS_PER_CITY, help="per city")
    parser.add_argument("--n-estimators", type=int, default=N_ESTIMATORS)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    console = make_console()
    started = time.perf_counter()
    config = StackConfig(
        state_dir=args.state_dir,
        write_stack_file=not _stack_running(args.state_dir),
        persist=False,
        function_env={"RouterFunction": {"LIVE_MODEL_CACHE_SECONDS": "0"}},
        capture_buffer_seconds=1.0,
    )
    with LocalStack(config) as stack:
        print_banner(stack.info, time.perf_counter() - started)
        result = run_quality_demo(
            stack,
            args.state_dir / "training-quality",
            console,
            predictions_per_city=args.predictions,
            labels_per_city=args.labels,
            n_estimators=args.n_estimators,
        )

    def found() -> str:
        worst, top = result.quality[0], result.drifting[0]
        return (
            f"found: {WORSE_CITY} errs {worst['live_vs_offline']}× its offline error; "
            f"{DRIFTED_CITY} drifts ({top['features']}: PSI {top['max_psi']:.3f}, JS {top['max_js']:.3f})"
        )

    return finish(console, verdict(result), found, started, args.json, result.as_dict())


def finish(
    console: Console,
    problems: Sequence[str],
    success: Callable[[], str],
    started: float,
    json_path: Path | None,
    figures: Mapping[str, Any],
) -> int:
    """A demo's last words: its problems in red, else ``success()`` in green; the figures to ``json_path``;
    the exit status (1 when there were problems)."""
    for problem in problems:
        console.print(f"[red]{problem}")
    if not problems:
        console.print(f"[green]{success()}", highlight=False)
    console.rule(f"done in {time.perf_counter() - started:.1f} s — stack stopped")
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
