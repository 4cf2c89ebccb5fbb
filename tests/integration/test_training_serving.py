"""One city through the real train.py process, packaged, unpacked and served by inference.py from file."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from house_prices import naming, schema
from training import data, local_runs, packaging

pytestmark = pytest.mark.slow


def extract(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def load_program(path: Path) -> ModuleType:
    """Load inference.py the way the endpoint does: from its file, not as a package module."""
    spec = importlib.util.spec_from_file_location("served_inference", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train Houston_TX with `python train.py` and explicit paths (no SM_* variables), as the notebook ran it."""
    root = tmp_path_factory.mktemp("houston")
    city = data.generate_city("Houston_TX")
    dirs = {"train": root / "train", "val": root / "validation", "test": root / "test"}
    data.write_city_csvs(city, dirs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env["PYTHONPATH"] = local_runs.python_path()
    completed = subprocess.run(
        [sys.executable, str(local_runs.TRAIN_SCRIPT), "--n-estimators", "100", "--min-samples-leaf", "3",
         "--model-name", "Houston_TX", "--random-state", "3", "--model-dir", str(root / "model"),
         "--train", str(dirs["train"]), "--validation", str(dirs["val"]), "--test", str(dirs["test"])],
        env=env, cwd=root, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    (root / "stdout.txt").write_text(completed.stdout)
    archive = packaging.package_model(root / "model", root / "output" / naming.ARTIFACT_FILENAME)
    sourcedir = packaging.build_sourcedir(root / "sourcedir.tar.gz")
    return {
        "root": root,
        "model": extract(archive, root / "unpacked-model"),
        "code": extract(sourcedir, root / "unpacked-code"),
        "test_csv": dirs["test"] / "Houston_TX_test.csv",
    }


def test_train_py_prints_the_seed_metric_lines(trained: dict[str, Path]) -> None:
    stdout = (trained["root"] / "stdout.txt").read_text()
    metrics = json.loads((trained["model"] / naming.METRICS_FILENAME).read_text())
    for q in (10, 50, 90):
        match = re.search(rf"AE-at-{q}th-percentile: ([0-9.]+).*$", stdout, re.MULTILINE)
        assert match is not None
        assert float(match.group(1)) == pytest.approx(metrics["validation"][f"ae_p{q}"], abs=1e-4)


def test_artifact_unpacks_to_root_files(trained: dict[str, Path]) -> None:
    assert sorted(p.name for p in trained["model"].iterdir()) == sorted(naming.REQUIRED_ARTIFACT_FILES)


@pytest.mark.parametrize("content_type", ["text/csv", "application/json", "application/x-npy"])
@pytest.mark.parametrize("accept", ["application/json", "text/csv", "application/x-npy"])
def test_hooks_from_the_unpacked_sourcedir_predict_like_the_in_memory_model(
    trained: dict[str, Path], content_type: str, accept: str
) -> None:
    # Given the served program and model, unpacked from the two archives
    program = load_program(trained["code"] / "inference.py")
    served = program.model_fn(str(trained["model"]))
    reference = fitted_in_memory(trained)
    houses = np.loadtxt(trained["test_csv"], delimiter=",", ndmin=2)[:, 1:]
    if content_type == "text/csv":
        body: str | bytes = schema.rows_to_csv(houses.tolist()).encode()
    elif content_type == "application/json":
        body = json.dumps(houses.tolist()).encode()
    else:
        buffer = io.BytesIO()
        np.save(buffer, houses)
        body = buffer.getvalue()
    # When a request goes through input_fn -> predict_fn -> output_fn
    payload, response_type = program.output_fn(program.predict_fn(program.input_fn(body, content_type), served), accept)
    # Then the response decodes to exactly the in-memory model's predictions
    if accept == "application/json":
        decoded = np.array(json.loads(payload))
    elif accept == "text/csv":
        decoded = np.array([float(line) for line in payload.decode().splitlines()])
    else:
        decoded = np.load(io.BytesIO(payload))
    assert response_type == accept
    assert type(served).__name__ == "PackedForest"
    assert decoded.shape == (100,)
    assert np.array_equal(decoded, reference.predict(houses))


def test_one_house_gives_one_price(trained: dict[str, Path]) -> None:
    program = load_program(trained["code"] / "inference.py")
    served = program.model_fn(str(trained["model"]))
    payload, _ = program.output_fn(
        program.predict_fn(program.input_fn("1995,3000,4,2.0,1.0,2", "text/csv"), served), None
    )
    [price] = json.loads(payload)
    # The formula gives 450000 + 40000 + 30000 + 15000 + 30000 - 120000 = 445000; the forest is close
    assert abs(price - 445_000) < 0.1 * 445_000


def test_train_py_runs_from_the_unpacked_sourcedir_alone(trained: dict[str, Path]) -> None:
    """As in the container: only the sourcedir (the script's own directory) supplies house_prices.

    ``-S`` skips site processing, so the venv's .pth (which adds layers/common and the repo) is not
    read; site-packages is added back by hand for numpy/sklearn only (packed_forest comes from the sourcedir).
    """
    import sklearn

    site_packages = str(Path(sklearn.__file__).resolve().parents[1])
    code, root = trained["code"], trained["root"]
    completed = subprocess.run(
        [sys.executable, "-S", "-c",
         "import sys, runpy; sys.path.append(sys.argv.pop(1)); sys.argv[0] = 'train.py';"
         " runpy.run_path('train.py', run_name='__main__')",
         site_packages, "--n-estimators", "5", "--model-dir", str(root / "m2"),
         "--train", str(root / "train"), "--validation", str(root / "validation")],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(root)}, cwd=code,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert (root / "m2" / naming.PACKED_MODEL_FILENAME).is_file()
    assert "AE-at-50th-percentile:" in completed.stdout


def fitted_in_memory(trained: dict[str, Path]) -> Any:
    """Houston_TX fitted here exactly as the fixture's train.py run fitted it (deterministic per random_state)."""
    from sklearn.ensemble import RandomForestRegressor

    train = np.loadtxt(trained["root"] / "train" / "Houston_TX_train.csv", delimiter=",", ndmin=2)
    model = RandomForestRegressor(n_estimators=100, min_samples_leaf=3, random_state=3, n_jobs=1)
    return model.fit(train[:, 1:], train[:, 0])


def test_served_model_is_the_model_training_fitted(trained: dict[str, Path]) -> None:
    # Given the same training split and hyperparameters, fitted here in memory (forests are deterministic
    # for a fixed random_state)
    in_memory = fitted_in_memory(trained)
    # When the packaged model is served from the unpacked archives
    program = load_program(trained["code"] / "inference.py")
    served = program.model_fn(str(trained["model"]))
    houses = np.loadtxt(trained["test_csv"], delimiter=",", ndmin=2)[:, 1:]
    payload, _ = program.output_fn(
        program.predict_fn(program.input_fn(schema.rows_to_csv(houses.tolist()), "text/csv"), served),
        "application/json",
    )
    # Then it predicts exactly what the in-memory model predicts
    assert np.array_equal(np.array(json.loads(payload)), in_memory.predict(houses))
