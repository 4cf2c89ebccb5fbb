"""All notebook cities in parallel processes (acceptance), failure reporting, and the CLI publishing to S3."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from house_prices import naming, schema
from packed_forest import PackedForest
from testkit.aws import moto_s3, s3_client
from training import inputs, local_runs, results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def notebook_run(tmp_path_factory: pytest.TempPathFactory) -> results.RunReport:
    return local_runs.train_locally(schema.NOTEBOOK_CITIES, tmp_path_factory.mktemp("cities"), progress=False)


def test_every_notebook_city_trains(notebook_run: results.RunReport) -> None:
    assert notebook_run.ok, [failure.stderr_tail() for failure in notebook_run.failures]
    assert [result.city for result in notebook_run.results] == list(schema.NOTEBOOK_CITIES)
    # One worker process per CPU trains a shard of cities, not one process per city
    workers = min(os.cpu_count() or 1, len(schema.NOTEBOOK_CITIES))
    assert len({result.job_name for result in notebook_run.results}) == workers
    for result in notebook_run.results:
        assert result.metrics["rows"] == {"train": 600, "validation": 300, "test": 100}
        assert result.metrics["model_name"] == result.city
        naming.validate_job(result.job_name)


def test_each_city_test_median_error_is_under_5_percent_of_its_median_price(notebook_run: results.RunReport) -> None:
    """Acceptance: computed here from the packaged artifact and the test CSV, not taken from metrics.json."""
    for result in notebook_run.results:
        with tarfile.open(result.artifact, "r:gz") as tar:
            packed = tar.extractfile(naming.PACKED_MODEL_FILENAME)
            assert packed is not None
            model = PackedForest.from_bytes(packed.read())
        rows = np.loadtxt(result.inputs["test"], delimiter=",", ndmin=2)
        prices = rows[:, 0]
        median_error = float(np.median(np.abs(prices - model.predict(rows[:, 1:]))))
        assert median_error < 0.05 * float(np.median(prices)), result.city
        assert median_error == pytest.approx(result.metrics["test"]["ae_p50"])


def test_a_failing_city_is_reported_with_its_stderr(tmp_path: Path) -> None:
    # Given a hyperparameter sklearn refuses / When one city trains
    report = local_runs.train_locally(
        ["Dallas_TX"], tmp_path, hyperparameters=inputs.Hyperparameters(n_estimators=0), progress=False
    )
    # Then the failure carries the process's exit code and the real error
    assert not report.results
    [failure] = report.failures
    assert failure.city == "Dallas_TX"
    assert failure.returncode != 0
    assert "n_estimators" in failure.stderr
    with pytest.raises(results.TrainingJobFailed, match="n_estimators"):
        report.raise_for_failures()


@pytest.fixture
def s3_server() -> Iterator[str]:
    with moto_s3("training-bucket") as url:
        yield url


def test_cli_trains_and_publishes_through_a_real_s3_endpoint(s3_server: str, tmp_path: Path) -> None:
    # Given an S3 endpoint reached only through the standard AWS_ENDPOINT_URL_S3 variable
    s3 = s3_client(s3_server)
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": s3_server}
    # When the CLI trains one city and publishes
    completed = subprocess.run(
        [sys.executable, "-m", "training.jobs", "--cities", "Phoenix_AZ", "--publish", "--bucket", "training-bucket",
         "--prefix", "TEST_PREFIX", "--no-progress", "--work-dir", str(tmp_path), "--n-estimators", "20"],
        env=env, cwd=local_runs.REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    # Then the inputs sit at the prep keys and the artifact at a training-output key model-sync accepts
    layout = naming.KeyLayout("TEST_PREFIX")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="training-bucket")["Contents"])
    assert [key for key in keys if "/model_prep/" in key] == sorted(
        layout.prep_key("Phoenix_AZ", split) for split in naming.SPLITS
    )
    [output_key] = [key for key in keys if key.startswith(layout.training_output_prefix)]
    assert layout.parse_training_output_key(output_key).city == "Phoenix_AZ"
    assert f"s3://training-bucket/{output_key}" in completed.stdout
    local = tmp_path / "Phoenix_AZ" / "output" / naming.ARTIFACT_FILENAME
    assert s3.get_object(Bucket="training-bucket", Key=output_key)["Body"].read() == local.read_bytes()
    assert "Phoenix_AZ" in completed.stderr  # the results table goes to stderr
