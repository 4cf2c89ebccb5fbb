"""Your own file to served prices on the local stack: validate, train in shards, publish, promote, price, retrain.

The CLI runs as a user runs it (a process, boto3 reaching the stack only through AWS_ENDPOINT_URL_*).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from house_prices.registry import ModelRegistry
from local.demo import wait_for_live
from local.stack import LocalStack
from tests.e2e.stack_harness import QUIET

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
HEADER = ["Region Name", "sale_price", "yr_built", "living_sqft", "bedrooms", "baths", "lot_sqft", "garage"]
MAPPING = [
    "--column", "YEAR_BUILT=yr_built", "--column", "SQUARE_FEET=living_sqft", "--column", "NUM_BEDROOMS=bedrooms",
    "--column", "NUM_BATHROOMS=baths", "--column", "LOT_ACRES=lot_sqft/43560", "--column", "GARAGE_SPACES=garage",
]  # fmt: skip


def write_houses(path: Path, regions: dict[str, int], seed: int) -> None:
    """A user's export: a header with their own names, one row per sale, prices that depend on the house."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for level, (region, count) in enumerate(regions.items(), start=1):
            for _ in range(count):
                sqft = int(rng.integers(800, 4_000))
                price = 50_000 * level + 140 * sqft + float(rng.normal(0, 10_000))
                year, beds, baths = int(rng.integers(1950, 2020)), int(rng.integers(1, 6)), int(rng.integers(2, 8)) / 2
                lot, garage = int(rng.integers(2_000, 60_000)), int(rng.integers(0, 3))
                writer.writerow([region, round(price), year, sqft, beds, baths, lot, garage])


def train_file(stack: LocalStack, data: Path, work_dir: Path, *extra: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "training.jobs", "--data", str(data), "--segment-column", "Region Name",
         "--price-column", "sale_price", *MAPPING, "--publish", "--bucket", stack.info.bucket,
         "--prefix", stack.info.prefix, "--work-dir", str(work_dir), "--n-estimators", "20", "--json", *extra],
        env={**os.environ, **stack.info.client_environment()}, cwd=ROOT, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


def outcomes(run: dict[str, Any]) -> dict[str, str]:
    return {segment["city"]: segment["outcome"] for segment in run["segments"]}


HOUSE = {"YEAR_BUILT": 2001, "SQUARE_FEET": 2_000, "NUM_BEDROOMS": 3, "NUM_BATHROOMS": 2.0, "LOT_ACRES": 0.5,
         "GARAGE_SPACES": 1}  # fmt: skip


def test_a_users_file_is_validated_trained_promoted_served_and_retrained_incrementally(
    stack: LocalStack, registry: ModelRegistry, tmp_path: Path
) -> None:
    # Given a file with three regions, one of them too small to train, named in the user's own way
    data = tmp_path / "sales.csv"
    write_houses(data, {"North Shore": 150, "Lakeview": 150, "Tiny Town": 12}, seed=1)
    # When it is trained and published, waiting for model-sync's verdicts
    first = train_file(stack, data, tmp_path / "work", "--wait-live", "60", "--table", stack.info.registry_table)
    # Then the two real regions trained under their documented city names, and the small one is named as skipped
    assert outcomes(first) == {"Lakeview": "trained", "North_Shore": "trained", "Tiny_Town": "skipped"}
    assert "fewer than --min-rows" in next(s["reason"] for s in first["segments"] if s["city"] == "Tiny_Town")
    assert first["validation"]["rows_read"] == 312
    # And the run itself reports both as live, with the version model-sync gave each
    verdicts = {s["city"]: (s["verdict"], s["version"]) for s in first["segments"] if s["outcome"] == "trained"}
    assert {city: verdict for city, (verdict, _) in verdicts.items()} == {"Lakeview": "live", "North_Shore": "live"}
    # And model-sync promoted both, and the API prices a house in each, the dearer region higher
    live = wait_for_live(registry, ["North_Shore", "Lakeview"], QUIET, timeout=60)
    prices = {}
    for city in ("North_Shore", "Lakeview"):
        response = httpx.post(f"{stack.info.api_url}/locations/{city}/predictions", json=HOUSE, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["model"]["version"] == live[city].version == verdicts[city][1]
        prices[city] = response.json()["predictions"][0]["price"]
    assert prices["Lakeview"] > prices["North_Shore"]

    # When the same file is run again
    again = train_file(stack, data, tmp_path / "work")
    # Then nothing retrains
    assert outcomes(again) == {"Lakeview": "unchanged", "North_Shore": "unchanged", "Tiny_Town": "skipped"}

    # When rows are added to one region only
    write_houses(data, {"North Shore": 150, "Lakeview": 170, "Tiny Town": 12}, seed=1)
    third = train_file(stack, data, tmp_path / "work")
    # Then only that region retrains, and model-sync records its new version (live or held back by the gate)
    assert outcomes(third) == {"Lakeview": "trained", "North_Shore": "unchanged", "Tiny_Town": "skipped"}
    deadline = time.monotonic() + 60
    while len(registry.versions("Lakeview")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(registry.versions("Lakeview")) == 2
    assert len(registry.versions("North_Shore")) == 1


def test_a_file_whose_price_column_is_a_feature_publishes_nothing(stack: LocalStack, tmp_path: Path) -> None:
    # Given a file whose "price" the user pointed at a feature column (the classic trap)
    data = tmp_path / "trap.csv"
    write_houses(data, {"Trap Town": 100}, seed=2)
    before = stack.client("s3").list_objects_v2(Bucket=stack.info.bucket, Prefix=f"{stack.info.prefix}/model_prep/Trap")
    # When it is run
    completed = subprocess.run(
        [sys.executable, "-m", "training.jobs", "--data", str(data), "--segment-column", "Region Name",
         "--price-column", "yr_built", "--column", "SQUARE_FEET=living_sqft", "--column", "NUM_BEDROOMS=bedrooms",
         "--column", "NUM_BATHROOMS=baths", "--column", "LOT_ACRES=lot_sqft/43560", "--column", "GARAGE_SPACES=garage",
         "--column", "YEAR_BUILT=yr_built", "--publish", "--bucket", stack.info.bucket, "--prefix", stack.info.prefix,
         "--work-dir", str(tmp_path / "work")],
        env={**os.environ, **stack.info.client_environment()}, cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    # Then it ends with a clear one-line error and no traceback, and nothing reached the bucket
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    assert "yr_built" in completed.stderr
    after = stack.client("s3").list_objects_v2(Bucket=stack.info.bucket, Prefix=f"{stack.info.prefix}/model_prep/Trap")
    assert after.get("KeyCount", 0) == before.get("KeyCount", 0) == 0
