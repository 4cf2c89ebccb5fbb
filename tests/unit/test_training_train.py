"""train.py in process: channel loading, argument defaults, metrics lines and metrics.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import joblib
import numpy as np
import pytest

from house_prices import drift, naming, schema
from packed_forest import PackedForest
from packed_forest.evaluation import error_metrics
from training import data
from training import train as train_script

METRIC_REGEX = re.compile(r"AE-at-50th-percentile: ([0-9.]+).*$", re.MULTILINE)


@pytest.fixture
def channels(tmp_path: Path) -> dict[str, Path]:
    city = data.generate_city("Chicago_IL", n=200)
    dirs = {"train": tmp_path / "train", "val": tmp_path / "validation", "test": tmp_path / "test"}
    data.write_city_csvs(city, dirs)
    return dirs


def test_first_row_of_a_headerless_csv_is_kept(tmp_path: Path) -> None:
    # Given a headerless CSV whose first row is unique
    (tmp_path / "a.csv").write_text("111111,2000,1500,3,2.0,0.5,1\n222222,1990,2500,4,2.5,1.25,2\n")
    # When the channel is loaded
    features, prices = train_script.load_channel(tmp_path)
    # Then both rows are there, the first one included
    assert prices.tolist() == [111111, 222222]
    assert features[0].tolist() == [2000, 1500, 3, 2.0, 0.5, 1]


def test_a_channel_reads_every_csv_and_a_single_row_file(tmp_path: Path) -> None:
    (tmp_path / "part1.csv").write_text("1,2000,1500,3,2.0,0.5,1\n")
    (tmp_path / "part2.csv").write_text("2,2000,1500,3,2.0,0.5,1\n3,2000,1500,3,2.0,0.5,1\n")
    (tmp_path / "notes.txt").write_text("not data")
    _, prices = train_script.load_channel(tmp_path)
    assert prices.tolist() == [1, 2, 3]


def test_wrong_column_count_names_the_expected_columns(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("1,2,3\n")
    with pytest.raises(ValueError, match="expected 7: PRICE, YEAR_BUILT") as error:
        train_script.load_channel(tmp_path)
    assert "bad.csv" in str(error.value)


def test_empty_channel_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no \.csv files"):
        train_script.load_channel(tmp_path)


def test_paths_default_to_the_sagemaker_environment() -> None:
    env = {"SM_MODEL_DIR": "/m", "SM_CHANNEL_TRAIN": "/t", "SM_CHANNEL_VALIDATION": "/v"}
    args = train_script.parse_args([], env)
    assert (args.model_dir, args.train, args.validation, args.test) == ("/m", "/t", "/v", None)
    assert (args.n_estimators, args.min_samples_leaf) == (100, 3)


def test_missing_paths_name_the_option_and_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        train_script.parse_args([], {"SM_MODEL_DIR": "/m", "SM_CHANNEL_TRAIN": "/t"})
    assert "--validation is required (or set SM_CHANNEL_VALIDATION)" in capsys.readouterr().err


def test_training_writes_model_and_documented_metrics(
    channels: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 200 houses split 120/60/20 / When train.py runs with a test channel
    model_dir = tmp_path / "model"
    argv = [
        "--n-estimators", "10", "--min-samples-leaf", "3", "--model-name", "Chicago_IL", "--random-state", "1",
        "--model-dir", str(model_dir), "--train", str(channels["train"]),
        "--validation", str(channels["val"]), "--test", str(channels["test"]),
    ]  # fmt: skip
    assert train_script.main(argv) == 0
    metrics = json.loads((model_dir / naming.METRICS_FILENAME).read_text())
    # Then metrics.json has exactly the documented keys
    assert set(metrics) == {
        "validation", "test", "rows", "features", "versions", "hyperparameters", "model_name", "model_format",
        "reference",
    }  # fmt: skip
    assert metrics["model_format"] == {"name": "house-prices/packed-forest", "version": 2}
    assert set(metrics["validation"]) == {"ae_p10", "ae_p50", "ae_p90", "r2", "rows"}
    assert set(metrics["test"]) == {"ae_p10", "ae_p50", "ae_p90", "r2", "rows", "median_price"}
    assert metrics["rows"] == {"train": 120, "validation": 60, "test": 20}
    assert metrics["features"] == list(schema.FEATURE_NAMES)
    assert set(metrics["versions"]) == {"sklearn", "numpy", "python"}
    assert metrics["hyperparameters"] == {"n_estimators": 10, "min_samples_leaf": 3, "random_state": 1}
    assert metrics["model_name"] == "Chicago_IL"
    v = metrics["validation"]
    assert 0 <= v["ae_p10"] <= v["ae_p50"] <= v["ae_p90"]
    # And the notebook's metric line carries the same validation AE p50 SageMaker's regex would scrape
    scraped = METRIC_REGEX.search(capsys.readouterr().out)
    assert scraped is not None
    assert float(scraped.group(1)) == pytest.approx(v["ae_p50"], abs=1e-4)
    # And the saved model is the packed forest alone (no pickle), and it reproduces the recorded error exactly
    assert {path.name for path in model_dir.iterdir()} == {naming.METRICS_FILENAME, naming.PACKED_MODEL_FILENAME}
    model = PackedForest.load(model_dir / naming.PACKED_MODEL_FILENAME)
    features, prices = train_script.load_channel(channels["val"])
    assert np.median(np.abs(prices - model.predict(features))) == v["ae_p50"]


def test_metrics_hold_each_features_reference_bins_by_the_drift_modules_rule(
    channels: dict[str, Path], tmp_path: Path
) -> None:
    # Given 120 training rows / When train.py runs
    model_dir = tmp_path / "model"
    argv = ["--n-estimators", "5", "--model-dir", str(model_dir), "--train", str(channels["train"]),
            "--validation", str(channels["val"])]  # fmt: skip
    assert train_script.main(argv) == 0
    reference = json.loads((model_dir / naming.METRICS_FILENAME).read_text())["reference"]
    features, _ = train_script.load_channel(channels["train"])
    # Then every feature has decile edges and counts of its training rows, as house_prices.drift builds them
    assert list(reference) == list(schema.FEATURE_NAMES)
    for column, name in enumerate(schema.FEATURE_NAMES):
        expected = drift.build_reference(features[:, column].tolist())
        assert drift.Reference.from_json(reference[name]) == expected
        assert sum(reference[name]["counts"]) == 120
    # And a discrete feature has fewer, de-duplicated edges (bedrooms take 5 values)
    assert len(reference["NUM_BEDROOMS"]["edges"]) < len(drift.DECILES)


def test_reference_bins_match_on_ties_and_extremes() -> None:
    # Given values with heavy ties and an outlier
    values = np.array([[1.0] * 6] * 50 + [[2.0] * 6] * 30 + [[1e6] * 6] * 1)
    # When the references are computed with numpy
    references = train_script.reference_distributions(values)
    # Then they equal the pure-Python rule exactly
    for name in schema.FEATURE_NAMES:
        assert drift.Reference.from_json(references[name]) == drift.build_reference(values[:, 0].tolist())


def test_keep_joblib_also_writes_the_estimator_which_predicts_the_same(
    channels: dict[str, Path], tmp_path: Path
) -> None:
    # Given the opt-in flag as SageMaker passes hyperparameters (a string value)
    argv = ["--n-estimators", "5", "--random-state", "3", "--model-dir", str(tmp_path), "--keep-joblib", "true"]
    train_script.main([*argv, "--train", str(channels["train"]), "--validation", str(channels["val"])])
    # Then the pickled estimator sits beside the packed forest and both predict the same prices
    estimator = joblib.load(tmp_path / naming.PICKLED_MODEL_FILENAME)
    packed = PackedForest.load(tmp_path / naming.PACKED_MODEL_FILENAME)
    features, _ = train_script.load_channel(channels["val"])
    assert np.array_equal(estimator.predict(features), packed.predict(features))


def test_without_test_channel_metrics_have_no_test_section(channels: dict[str, Path], tmp_path: Path) -> None:
    argv = ["--n-estimators", "5", "--model-dir", str(tmp_path / "m"), "--train", str(channels["train"])]
    train_script.main([*argv, "--validation", str(channels["val"])])
    metrics = json.loads((tmp_path / "m" / naming.METRICS_FILENAME).read_text())
    assert "test" not in metrics
    assert metrics["rows"]["test"] == 0


def test_single_row_r2_is_null_not_nan() -> None:
    assert error_metrics(np.array([10.0]), np.array([12.0]))["r2"] is None
