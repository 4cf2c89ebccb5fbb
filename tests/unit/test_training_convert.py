"""training.convert: a pickled artifact becomes a packed one that predicts the same, without the pickle."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor

from house_prices import naming, schema
from packed_forest import PackedForest
from tests.packed_forest_v1 import npz as v1_npz
from tests.packed_forest_v1 import v1_members
from training import convert, data
from training.packaging import package_model


@pytest.fixture
def pickled_artifact(tmp_path: Path) -> tuple[Path, RandomForestRegressor]:
    houses = data.generate_houses("Chicago_IL", n=120)
    model = RandomForestRegressor(n_estimators=4, min_samples_leaf=3, random_state=2, n_jobs=1)
    model.fit(houses[:, 1:], houses[:, 0])
    model_dir = tmp_path / "legacy"
    model_dir.mkdir()
    joblib.dump(model, model_dir / naming.PICKLED_MODEL_FILENAME)
    metrics = {"validation": {"ae_p50": 1.0}, "features": list(schema.FEATURE_NAMES)}
    (model_dir / naming.METRICS_FILENAME).write_text(json.dumps(metrics))
    return package_model(model_dir, tmp_path / "model.tar.gz"), model


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_a_pickled_artifact_converts_to_a_packed_one_that_predicts_the_same(
    pickled_artifact: tuple[Path, RandomForestRegressor], tmp_path: Path
) -> None:
    source, model = pickled_artifact
    # When the converter runs on the legacy model.tar.gz
    assert convert.main([str(source), "--out", str(tmp_path / "packed.tar.gz")]) == 0
    # Then the output holds the packed forest and updated metrics, and no pickle
    members = _members(tmp_path / "packed.tar.gz")
    assert set(members) == {naming.PACKED_MODEL_FILENAME, naming.METRICS_FILENAME}
    metrics = json.loads(members[naming.METRICS_FILENAME])
    assert metrics["model_format"] == {"name": "house-prices/packed-forest", "version": 2}
    assert metrics["validation"] == {"ae_p50": 1.0}
    # And it predicts exactly what the pickled estimator predicts
    rows = data.generate_houses("Dallas_TX", n=30)[:, 1:]
    packed = PackedForest.from_bytes(members[naming.PACKED_MODEL_FILENAME])
    assert np.array_equal(packed.predict(rows), model.predict(rows))


def test_a_version_1_packed_artifact_is_upgraded_to_version_2_without_unpickling(tmp_path: Path) -> None:
    # Given a model.tar.gz holding a format version 1 forest.npz (no pickle) and its metrics
    houses = data.generate_houses("Chicago_IL", n=120)
    model = RandomForestRegressor(n_estimators=4, min_samples_leaf=3, random_state=2, n_jobs=1)
    model.fit(houses[:, 1:], houses[:, 0])
    model_dir = tmp_path / "v1"
    model_dir.mkdir()
    (model_dir / naming.PACKED_MODEL_FILENAME).write_bytes(v1_npz(v1_members(model, schema.FEATURE_NAMES)))
    metrics = {"validation": {"ae_p50": 1.0}, "model_format": {"name": "house-prices/packed-forest", "version": 1}}
    (model_dir / naming.METRICS_FILENAME).write_text(json.dumps(metrics))
    source = package_model(model_dir, tmp_path / "v1.tar.gz")
    # When the converter runs on it
    assert convert.main([str(source), "--out", str(tmp_path / "v2.tar.gz")]) == 0
    # Then the output's forest is format version 2, says so in its metrics, and predicts the same
    members = _members(tmp_path / "v2.tar.gz")
    assert set(members) == {naming.PACKED_MODEL_FILENAME, naming.METRICS_FILENAME}
    assert json.loads(members[naming.METRICS_FILENAME])["model_format"]["version"] == 2
    packed = PackedForest.from_bytes(members[naming.PACKED_MODEL_FILENAME])
    assert packed.format_version == 2
    rows = data.generate_houses("Dallas_TX", n=30)[:, 1:]
    assert np.array_equal(packed.predict(rows), model.predict(rows))


def test_keep_joblib_keeps_the_estimator_beside_the_packed_forest(
    pickled_artifact: tuple[Path, RandomForestRegressor], tmp_path: Path
) -> None:
    source, _ = pickled_artifact
    convert.main([str(source), "--out", str(tmp_path / "both.tar.gz"), "--keep-joblib"])
    assert set(_members(tmp_path / "both.tar.gz")) == {
        naming.PACKED_MODEL_FILENAME,
        naming.METRICS_FILENAME,
        naming.PICKLED_MODEL_FILENAME,
    }


def test_an_unsafe_or_unconvertible_input_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An archive that tries to escape its directory is refused before anything is extracted
    hostile = tmp_path / "hostile.tar.gz"
    with tarfile.open(hostile, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    assert convert.main([str(hostile), "--out", str(tmp_path / "out.tar.gz")]) == 1
    assert "escapes the archive root" in capsys.readouterr().err
    assert not (tmp_path / "escape.txt").exists()
    # A model directory without a pickle says so
    empty = tmp_path / "empty"
    empty.mkdir()
    assert convert.main([str(empty), "--out", str(tmp_path / "out.tar.gz")]) == 1
    assert "holds no model.joblib" in capsys.readouterr().err
