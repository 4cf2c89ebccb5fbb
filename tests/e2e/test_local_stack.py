"""The whole local stack: train → S3 event → model-sync → registry → HTTP API → router → endpoint.

One stack per session (``tests/e2e/conftest.py``: LocalStack on free ports, state in a temporary
directory); the router's live-version cache is switched off through the stack's per-function
environment overrides, so a promotion is visible at once instead of after LIVE_MODEL_CACHE_SECONDS.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from house_prices import schema
from house_prices.naming import KeyLayout
from house_prices.registry import ModelRegistry
from local.demo import wait_for_live
from local.process import group_members, port_is_free
from local.stack import LocalStack
from local.template import REPO_ROOT
from testkit.models import tar_gz
from testkit.servers import metric_value
from tests.e2e.stack_harness import (
    CITIES,
    QUIET,
    houses,
    invoke_pickle_under_the_model_prefix,
    malicious_artifact,
    reference_predictions,
    s3_event,
    train,
    wait_drained,
)

pytestmark = pytest.mark.slow

RETRAIN_CITY = "Dallas_TX"


def predict(stack: LocalStack, city: str, payload: Any, **params: str) -> httpx.Response:
    return httpx.post(f"{stack.info.api_url}/locations/{city}/predictions", json=payload, params=params, timeout=30)


def test_api_predictions_equal_inference_py_on_the_published_artifact(
    stack: LocalStack, trained: dict, tmp_path: Path
) -> None:
    for city in CITIES:
        # Given the live version model-sync promoted, and houses the model never saw
        live = trained["live"][city]
        batch = houses(city, 5, seed=7)
        # When they are priced through the HTTP API
        response = predict(stack, city, {"houses": batch})
        # Then the API answers with the live model, and exactly what inference.py computes
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["location"] == city
        assert body["model"] == {"version": live.version, "target_model": live.target_model}
        api_prices = [item["price"] for item in body["predictions"]]
        assert api_prices == pytest.approx(reference_predictions(stack, city, live.version, batch, tmp_path), rel=1e-12)


def test_listing_shows_every_trained_city(stack: LocalStack, trained: dict) -> None:
    response = httpx.get(f"{stack.info.api_url}/locations", timeout=10)
    assert response.status_code == 200
    listed = {item["location"]: item["version"] for item in response.json()["locations"]}
    assert {city: listed.get(city) for city in CITIES} == {city: trained["live"][city].version for city in CITIES}


def test_retrain_goes_live_and_the_old_version_stays_addressable(
    stack: LocalStack, registry: ModelRegistry, trained: dict, tmp_path: Path
) -> None:
    old = trained["live"][RETRAIN_CITY]
    # Given a retrain on more data (better validation error, so the quality gate promotes it)
    train(stack, (RETRAIN_CITY,), tmp_path / "retrain", houses_per_city=2000)
    new = wait_for_live(registry, (RETRAIN_CITY,), QUIET, timeout=60, newer_than={old.city: old.version})[RETRAIN_CITY]
    batch = houses(RETRAIN_CITY, 3, seed=11)
    # Then the API serves the new version by default
    current = predict(stack, RETRAIN_CITY, {"houses": batch})
    assert current.status_code == 200
    assert current.json()["model"]["version"] == new.version
    new_prices = [p["price"] for p in current.json()["predictions"]]
    assert new_prices == pytest.approx(reference_predictions(stack, RETRAIN_CITY, new.version, batch, tmp_path))
    # And the previous version still answers when pinned, with its own predictions
    pinned = predict(stack, RETRAIN_CITY, {"houses": batch}, version=old.version)
    assert pinned.status_code == 200
    assert pinned.json()["model"]["version"] == old.version
    old_prices = [p["price"] for p in pinned.json()["predictions"]]
    assert old_prices == pytest.approx(reference_predictions(stack, RETRAIN_CITY, old.version, batch, tmp_path))
    assert old_prices != new_prices


def _snapshot(stack: LocalStack, registry: ModelRegistry, city: str) -> dict[str, Any]:
    s3 = stack.client("s3")
    listing = s3.list_objects_v2(Bucket=stack.info.bucket, Prefix=KeyLayout(stack.info.prefix).mme_prefix)
    return {
        "live": registry.live_model(city),
        "versions": [v.as_dict() for v in registry.versions(city)],
        "objects": sorted((o["Key"], o["ETag"], o["LastModified"]) for o in listing.get("Contents", [])),
    }


def test_a_duplicate_s3_event_changes_nothing(stack: LocalStack, registry: ModelRegistry, trained: dict) -> None:
    city = CITIES[0]
    key = trained["keys"][city]
    before = _snapshot(stack, registry, city)
    queues = stack.info.queues["ModelSyncFunction"]
    # Given the exact event S3 delivered for the training output, delivered a second time
    stack.client("sqs").send_message(QueueUrl=queues["queue_url"], MessageBody=json.dumps(s3_event(stack, key)))
    # When model-sync has handled it (the message is deleted only on success)
    wait_drained(stack, queues["queue_url"])
    # Then the registry and the MME prefix are exactly as before, and nothing was dead-lettered
    assert _snapshot(stack, registry, city) == before
    wait_drained(stack, queues["on_failure_url"], timeout=0.5)


VALID = houses("Chicago_IL", 1, seed=3)[0]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/no/such/route", {}, 404),
        ("DELETE", "/locations", {}, 404),
        ("POST", "/locations/Atlantis_XX/predictions", {"json": VALID}, 404),
        ("POST", "/locations/bad.city!/predictions", {"json": VALID}, 400),
        ("POST", "/locations/Chicago_IL/predictions", {"content": b"not json"}, 400),
        ("POST", "/locations/Chicago_IL/predictions", {"json": {**VALID, "POOL": 1}}, None),
        ("POST", "/locations/Chicago_IL/predictions", {"json": {**VALID, "YEAR_BUILT": "old"}}, None),
        ("POST", "/locations/Chicago_IL/predictions", {"json": {"houses": [VALID] * 1001}}, 413),
        ("POST", "/locations/Chicago_IL/predictions?version=20200101T000000Z-deadbeef", {"json": VALID}, 404),
        ("POST", "/locations/Chicago_IL/predictions?version=latest", {"json": VALID}, None),
        ("GET", "/locations/Atlantis_XX", {}, 404),
    ],
)
def test_every_error_response_is_json(
    stack: LocalStack, trained: dict, method: str, path: str, kwargs: dict, status: int | None
) -> None:
    response = httpx.request(method, f"{stack.info.api_url}{path}", timeout=30, **kwargs)
    # Invalid input is 400 or 422 (either is allowed by the API contract)
    assert response.status_code == status if status else response.status_code in {400, 422}
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json()["message"], str)


def _descendant_groups(pid: int) -> set[int]:
    """Process groups of ``pid``'s children (each stack component leads its own group)."""
    groups: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                groups.add(int(fields[2]))
    return groups


@dataclass
class RunningSupervisor:
    process: subprocess.Popen[str]
    facts: dict[str, Any]
    ports: list[int]
    groups: set[int]


def start_supervisor(state_dir: Path) -> RunningSupervisor:
    """`python -m local.stack` (make up) in its own state directory, ready, with its seven process groups."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    process = subprocess.Popen(
        [sys.executable, "-m", "local.stack", "--state-dir", str(state_dir), "--quiet"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(process.stdout.readline() or "{}")  # type: ignore[union-attr]
        assert ready.get("ready") is True, process.stderr.read() if process.poll() is not None else ready  # type: ignore[union-attr]
        facts = json.loads((state_dir / "stack.json").read_text())
        ports = [int(facts[name].rsplit(":", 1)[1]) for name in ("api_url", "endpoint_url", "s3_endpoint_url")]
        groups = _descendant_groups(process.pid)
        # moto, endpoint, three dispatchers (model-sync; quality's S3 event and its SQS event), HTTP API, log delivery,
        # the rollout decider's scheduler
        assert len(groups) == 8
        assert all(group_members(group) for group in groups)
    except BaseException:
        process.kill()
        raise
    return RunningSupervisor(process, facts, ports, groups)


def kill_groups(groups: set[int]) -> None:
    """A failed run must not leak servers into the rest of the suite."""
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def test_make_up_stops_every_process_and_frees_every_port_on_sigint(tmp_path: Path) -> None:
    # Given `python -m local.stack` (make up) running in its own state directory
    running = start_supervisor(tmp_path)
    try:
        assert httpx.get(f"{running.facts['api_url']}/health", timeout=10).status_code == 200
        # When it gets Ctrl-C
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(timeout=30) == 0
        # Then no process of any component is left, every port is free and stack.json is gone
        assert {group: group_members(group) for group in running.groups} == {group: [] for group in running.groups}
        assert all(port_is_free(port) for port in running.ports)
        assert not (tmp_path / "stack.json").exists()
    finally:
        if running.process.poll() is None:
            running.process.kill()
        kill_groups(running.groups)


def test_a_killed_supervisor_leaves_no_process_behind(tmp_path: Path) -> None:
    # Given `python -m local.stack` running with its four components
    running = start_supervisor(tmp_path)
    try:
        # When the supervisor dies without a chance to clean up (OOM killer, CI timeout, kill -9)
        running.process.kill()
        running.process.wait(timeout=10)
        # Then every component notices and stops by itself, freeing its port
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(group_members(group) for group in running.groups):
            time.sleep(0.25)
        assert {group: group_members(group) for group in running.groups} == {group: [] for group in running.groups}
        assert all(port_is_free(port) for port in running.ports)
    finally:
        kill_groups(running.groups)


# --- no code from data: pickles never run; a packed model trained anywhere serves ------------------


def _wait_for_version_record(registry: ModelRegistry, city: str, source_key: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in registry.versions(city):
            if record.source_key == source_key and not record.reason.startswith("pending"):
                return record
        time.sleep(0.2)
    raise AssertionError(f"model-sync recorded nothing for {source_key} within {timeout} s")


@pytest.mark.parametrize("city", ["Evil_TX", RETRAIN_CITY], ids=["new-city", "over-a-live-city"])
def test_a_malicious_pickle_published_through_s3_never_runs(
    stack: LocalStack, registry: ModelRegistry, trained: dict, tmp_path: Path, city: str
) -> None:
    # Given a model.tar.gz whose model.joblib writes a marker file when unpickled, claiming a tiny error
    marker = tmp_path / "marker"
    live_before = registry.find_live(city)
    layout = KeyLayout(stack.info.prefix)
    key = layout.training_output_key(city, f"evil-{int(time.time() * 1000)}")
    # When it is published where training outputs go (the S3 event runs model-sync)
    stack.client("s3").put_object(Bucket=stack.info.bucket, Key=key, Body=malicious_artifact(marker))
    record = _wait_for_version_record(registry, city, key)
    # Then it is rejected with the remedy, never promoted, and nothing ran
    assert record.status == "rejected"
    assert "python -m training.convert" in record.reason
    assert registry.find_live(city) == live_before
    response = predict(stack, city, houses("Chicago_IL", 1, seed=3)[0])
    assert response.status_code == (404 if live_before is None else 200), response.text
    assert not marker.exists()


def test_a_pickle_placed_under_the_mme_prefix_never_runs(stack: LocalStack, tmp_path: Path) -> None:
    # Given the same pickle written straight under the endpoint's model prefix (bypassing model-sync)
    # When a client invokes it by TargetModel
    marker = tmp_path / "marker"
    error = invoke_pickle_under_the_model_prefix(stack, marker)
    # Then the load fails with a clear error naming the remedy, and the pickle never ran
    assert "python -m training.convert" in str(error)
    assert not marker.exists()


def test_a_laptop_trained_packed_model_is_promoted_and_served(
    stack: LocalStack, registry: ModelRegistry, trained: dict, tmp_path: Path
) -> None:
    from sklearn.ensemble import RandomForestRegressor

    import packed_forest
    from packed_forest.evaluation import error_metrics
    from packed_forest.pack import pack_forest
    from training import data

    # Given a new city's inputs in the bucket, and a model fitted on a laptop (this venv's scikit-learn)
    city = "Tucson_AZ"
    layout = KeyLayout(stack.info.prefix)
    generated = data.generate_city(city)
    s3 = stack.client("s3")
    for split in ("train", "val", "test"):
        csv = io.BytesIO()
        np.savetxt(csv, generated.split_rows(split), delimiter=",", fmt="%.6g")
        s3.put_object(Bucket=stack.info.bucket, Key=layout.prep_key(city, split), Body=csv.getvalue())
    validation = np.loadtxt(
        io.BytesIO(s3.get_object(Bucket=stack.info.bucket, Key=layout.prep_key(city, "val"))["Body"].read()),
        delimiter=",",
    )
    train_rows = generated.split_rows("train")
    model = RandomForestRegressor(n_estimators=30, min_samples_leaf=3, random_state=5, n_jobs=1)
    model.fit(train_rows[:, 1:], train_rows[:, 0])
    packed = pack_forest(model, schema.FEATURE_NAMES)
    forest_file = io.BytesIO()
    packed_forest.write(forest_file, packed.arrays)
    metrics = {
        "validation": error_metrics(validation[:, 0], packed.predict(validation[:, 1:])),
        "features": list(schema.FEATURE_NAMES),
        "versions": {"sklearn": "laptop"},
    }
    key = layout.training_output_key(city, "laptop-1")
    # When it is published as a training output
    artifact = tar_gz({"forest.npz": forest_file.getvalue(), "metrics.json": json.dumps(metrics).encode()})
    s3.put_object(Bucket=stack.info.bucket, Key=key, Body=artifact)
    record = _wait_for_version_record(registry, city, key)
    # Then it is promoted, and model-sync pre-warmed it: the endpoint loaded it before any user asked
    assert record.status == "live", record.reason
    assert record.metrics["measured"]["validation"]["ae_p50"] == metrics["validation"]["ae_p50"]
    requests_before = metric_value(stack.info.endpoint_url, "ModelCacheHit_count")
    hits_before = metric_value(stack.info.endpoint_url, "ModelCacheHit_sum")
    # And the API serves exactly what the packed forest predicts
    batch = houses(city, 4, seed=9)
    response = predict(stack, city, {"houses": batch})
    assert response.status_code == 200, response.text
    # from a model that was already loaded: the endpoint counted the API's one request as a cache hit
    # (its metrics carry no per-model labels: a TargetModel names a city)
    assert metric_value(stack.info.endpoint_url, "ModelCacheHit_count") == requests_before + 1
    assert metric_value(stack.info.endpoint_url, "ModelCacheHit_sum") == hits_before + 1
    rows = np.array([[house[name] for name in schema.FEATURE_NAMES] for house in batch])
    assert [item["price"] for item in response.json()["predictions"]] == packed.predict(rows).tolist()
