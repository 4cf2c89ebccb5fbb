"""Serving hooks: packed loading (no unpickling by default), decoding, validation and the response formats."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

import packed_forest
from house_prices import naming, schema
from packed_forest import PackedForest
from packed_forest.pack import pack_forest
from tests.pickle_payloads import WritesMarker
from training import data, inference

ROWS = np.array([[1990, 2500, 3, 2.0, 1.0, 2], [2015, 4100, 5, 3.0, 1.25, 3]], dtype=np.float64)
TRAINING_DIR = Path(inference.__file__).resolve().parent


@pytest.fixture(scope="module")
def forest() -> RandomForestRegressor:
    """A small forest pickled with n_jobs=-1, as a careless trainer would leave it."""
    rows = data.generate_houses("Chicago_IL", n=200)
    return RandomForestRegressor(n_estimators=5, random_state=0, n_jobs=-1).fit(rows[:, 1:], rows[:, 0])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, forest: RandomForestRegressor) -> Path:
    """An unpacked model.tar.gz as train.py writes it: the packed forest, no pickle."""
    directory = tmp_path_factory.mktemp("model")
    packed_forest.write(directory / naming.PACKED_MODEL_FILENAME, pack_forest(forest, schema.FEATURE_NAMES).arrays)
    return directory


@pytest.fixture
def pickle_only_dir(tmp_path: Path) -> tuple[Path, Path]:
    directory = tmp_path / "model"
    directory.mkdir()
    marker = tmp_path / "marker"
    (directory / naming.PICKLED_MODEL_FILENAME).write_bytes(pickle.dumps(WritesMarker(marker)))
    return directory, marker


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_model_fn_loads_the_packed_forest(model_dir: Path) -> None:
    model = inference.model_fn(str(model_dir))
    assert isinstance(model, PackedForest)
    assert model.feature_names == schema.FEATURE_NAMES


def test_serving_imports_neither_sklearn_nor_joblib(model_dir: Path) -> None:
    # Given a fresh interpreter with only the serving program, as the container runs it
    script = (
        "import sys, inference; model = inference.model_fn(sys.argv[1]);"
        "print(inference.predict_fn(inference.input_fn('1990,2500,3,2.0,1.0,2', 'text/csv'), model)[0]);"
        "print(sorted(m for m in ('sklearn', 'joblib', 'pickle') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TRAINING_DIR), *sys.path])}
    out = subprocess.run([sys.executable, "-c", script, str(model_dir)], env=env, capture_output=True, text=True)
    # Then it predicts, and nothing that can unpickle or needs sklearn was imported
    assert out.returncode == 0, out.stderr
    price, modules = out.stdout.splitlines()
    assert float(price) > 0
    assert "sklearn" not in modules
    assert "joblib" not in modules


def test_a_pickle_only_model_is_refused_with_the_remedy_and_never_unpickled(
    pickle_only_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, marker = pickle_only_dir
    monkeypatch.delenv(inference.ALLOW_PICKLE_VARIABLE, raising=False)
    with pytest.raises(ValueError, match=r"python -m training\.convert") as refused:
        inference.load_model(str(directory))
    assert inference.ALLOW_PICKLE_VARIABLE in str(refused.value)
    assert not marker.exists()


def test_model_fn_keeps_an_unservable_model_whose_reason_every_prediction_reports(
    pickle_only_dir: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pickle-only model directory (the image's MMS would swallow a model_fn exception)
    directory, marker = pickle_only_dir
    monkeypatch.delenv(inference.ALLOW_PICKLE_VARIABLE, raising=False)
    # When model_fn loads it, Then it returns the reason, and predict_fn raises it on one line
    model = inference.model_fn(str(directory))
    with pytest.raises(ValueError, match=r"cannot be served: .*python -m training\.convert") as refused:
        inference.predict_fn(ROWS, model)
    assert "\n" not in str(refused.value)
    assert not marker.exists()


def test_the_opt_in_loads_a_users_estimator_single_threaded(
    tmp_path: Path, forest: RandomForestRegressor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a trusted estimator pickled with n_jobs=-1 and the explicit opt-in
    joblib.dump(forest, tmp_path / naming.PICKLED_MODEL_FILENAME)
    monkeypatch.setenv(inference.ALLOW_PICKLE_VARIABLE, "true")
    # Then it loads, serves single-threaded and predicts with its own predict
    model = inference.model_fn(str(tmp_path))
    assert forest.n_jobs == -1
    assert model.n_jobs == 1
    assert np.array_equal(inference.predict_fn(ROWS, model), model.predict(ROWS))


def test_model_fn_rejects_a_model_with_other_features(tmp_path: Path) -> None:
    model = RandomForestRegressor(n_estimators=2).fit(np.zeros((4, 3)), np.arange(4.0))
    packed_forest.write(tmp_path / naming.PACKED_MODEL_FILENAME, pack_forest(model, ["a", "b", "c"]).arrays)
    with pytest.raises(ValueError, match="differ from the serving order"):
        inference.load_model(str(tmp_path))


def test_model_fn_without_any_model_names_the_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no forest\.npz"):
        inference.load_model(str(tmp_path))


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (schema.rows_to_csv(ROWS.tolist()), "text/csv"),
        (schema.rows_to_csv(ROWS.tolist()).encode(), "text/csv; charset=utf-8"),
        (json.dumps(ROWS.tolist()), "application/json"),
        (json.dumps(ROWS.tolist()).encode(), "Application/JSON"),
        (npy(ROWS), "application/x-npy"),
    ],
)
def test_input_fn_decodes_every_supported_type(body: str | bytes, content_type: str) -> None:
    decoded = inference.input_fn(body, content_type)
    assert decoded.dtype == np.float64
    assert np.array_equal(decoded, ROWS)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("1990,2500,3,2.0,1.0,2", "text/csv"),
        (json.dumps(ROWS[0].tolist()), "application/json"),
        (npy(ROWS[0]), "application/x-npy"),
    ],
)
def test_one_dimensional_input_becomes_one_row(body: str | bytes, content_type: str) -> None:
    assert inference.input_fn(body, content_type).shape == (1, len(schema.FEATURE_NAMES))


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("1,2,3\n", "text/csv"), ("[[1, 2, 3]]", "application/json"), (npy(np.zeros(7)), "application/x-npy")],
)
def test_wrong_column_count_names_the_expected_features(body: str | bytes, content_type: str) -> None:
    with pytest.raises(ValueError, match="YEAR_BUILT, SQUARE_FEET, NUM_BEDROOMS, NUM_BATHROOMS") as error:
        inference.input_fn(body, content_type)
    assert "expected 6 columns" in str(error.value)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("", "text/csv", "empty"),
        ("1990,abc,3,2,1,2", "text/csv", "abc"),
        ('[{"YEAR_BUILT": 1990}]', "application/json", "cannot decode"),
        ("[1, 2", "application/json", "cannot decode"),
        ("[1990, 2500, 3, 2.0, NaN, 2]", "application/json", "LOT_ACRES must be a finite number"),
        ("[]", "application/json", "expected rows of 6 features"),
        ("1,2", "application/octet-stream", "unsupported content type 'application/octet-stream'"),
        (npy(ROWS.astype(np.complex128) + 1j), "application/x-npy", "must hold real numbers, got dtype complex128"),
        (npy(np.array(["1990", "2500"])), "application/x-npy", "must hold real numbers"),
    ],
)
def test_bad_bodies_raise_value_errors_that_say_why(body: str, content_type: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        inference.input_fn(body, content_type)


def test_predict_fn_matches_the_model(model_dir: Path, forest: RandomForestRegressor) -> None:
    model = inference.model_fn(str(model_dir))
    forest.n_jobs = 1
    assert np.array_equal(inference.predict_fn(ROWS, model), forest.predict(ROWS))


PREDICTIONS = np.array([123456.789, 654321.0])


@pytest.mark.parametrize("accept", [None, "", "*/*", "application/json", "text/html, application/*"])
def test_output_defaults_to_a_json_list_of_floats(accept: str | None) -> None:
    body, content_type = inference.output_fn(PREDICTIONS, accept)
    assert content_type == "application/json"
    assert json.loads(body) == [123456.789, 654321.0]


def test_output_csv_is_one_value_per_line() -> None:
    body, content_type = inference.output_fn(PREDICTIONS, "text/csv")
    assert content_type == "text/csv"
    assert body == b"123456.789\n654321.0\n"


def test_output_npy_is_a_one_dimensional_float_array() -> None:
    body, content_type = inference.output_fn(PREDICTIONS.reshape(-1, 1), "application/x-npy; q=1")
    assert content_type == "application/x-npy"
    decoded = np.load(io.BytesIO(body))
    assert decoded.shape == (2,)
    assert np.array_equal(decoded, PREDICTIONS)


def test_output_first_supported_accept_wins() -> None:
    assert inference.output_fn(PREDICTIONS, "image/png, text/csv, application/json")[1] == "text/csv"


def test_unsupported_accept_is_an_error() -> None:
    with pytest.raises(ValueError, match="unsupported accept type 'image/png'"):
        inference.output_fn(PREDICTIONS, "image/png")


@pytest.mark.parametrize("kind", [RandomForestRegressor, ExtraTreesRegressor])
def test_packed_forests_are_bit_identical_to_sklearn(kind: type) -> None:
    # Given a forest fitted on seed-like houses, predicting single-threaded
    # (with n_jobs=-1 sklearn's own sums arrive in thread order, so only n_jobs=1 is reproducible)
    rng = np.random.default_rng(7)
    houses = data.generate_houses("Chicago_IL", 400, 11)
    model = kind(n_estimators=25, min_samples_leaf=3, n_jobs=1, random_state=1).fit(houses[:, 1:], houses[:, 0])
    packed = pack_forest(model, schema.FEATURE_NAMES)
    rows = houses[rng.permutation(len(houses))[:50], 1:]
    # When predict_fn evaluates the packed trees / Then the prices equal sklearn's to the last bit
    for batch in (rows[:1], rows[:2], rows):
        assert np.array_equal(inference.predict_fn(batch, packed), model.predict(batch))


def test_other_models_use_their_own_predict() -> None:
    class Doubler:
        def predict(self, rows: np.ndarray) -> np.ndarray:
            return rows.sum(axis=1) * 2

    assert inference.predict_fn(np.array([[1.0, 2.0]]), Doubler()).tolist() == [6.0]


def test_packed_forest_refuses_non_finite_input(model_dir: Path) -> None:
    model = inference.model_fn(str(model_dir))
    row = np.array([[1995, 3000, 4, 2.5, np.nan, 2]])
    with pytest.raises(ValueError, match="finite"):
        inference.predict_fn(row, model)
