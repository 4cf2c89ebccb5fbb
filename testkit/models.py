"""Small real models for tests and benchmarks: fitted forests, ``model.tar.gz`` bytes, ``inference.py`` programs.

scikit-learn, joblib and numpy are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any


def fit_forest(seed: int, n_rows: int = 200, n_features: int = 6, n_estimators: int = 10, **params: Any) -> Any:
    """A small RandomForestRegressor on random data (real model, real file, seconds to build)."""
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(seed)
    features = rng.uniform(0, 10, size=(n_rows, n_features))
    target = features @ rng.uniform(1, 5, size=n_features) + rng.normal(0, 1, size=n_rows)
    params.setdefault("min_samples_leaf", 3)
    return RandomForestRegressor(n_estimators=n_estimators, random_state=seed, n_jobs=1, **params).fit(features, target)


def model_tar_gz(model: Any, extra_files: dict[str, bytes] | None = None, *, pickled: bool = False) -> bytes:
    """``model.tar.gz`` bytes with the packed ``forest.npz`` (or, if ``pickled``, ``model.joblib``) at its root."""
    if pickled:
        import joblib

        files = {"model.joblib": _joblib_bytes(model, joblib), **(extra_files or {})}
    else:
        files = {"forest.npz": packed_bytes(model), **(extra_files or {})}
    return tar_gz(files)


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A ``.tar.gz`` holding ``files`` (name -> bytes) at its root, in the given order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def packed_bytes(model: Any) -> bytes:
    """``forest.npz`` of a fitted forest; six features are named as the serving schema names them."""
    import packed_forest
    from house_prices.schema import FEATURE_NAMES
    from packed_forest.pack import pack_forest

    count = model.n_features_in_
    names = list(FEATURE_NAMES) if count == len(FEATURE_NAMES) else [f"f{i}" for i in range(count)]
    buffer = io.BytesIO()
    packed_forest.write(buffer, pack_forest(model, names).arrays)
    return buffer.getvalue()


def _joblib_bytes(model: Any, joblib: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def write_program(directory: Path, source: str, name: str = "inference.py") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(source)
    return path


# A test program: model_fn honours options.json in the artifact (load delay, failure); other hooks default.
OPTIONS_PROGRAM = """
import json
import os
import time

from packed_forest import PackedForest


def model_fn(model_dir):
    path = os.path.join(model_dir, "options.json")
    options = json.load(open(path)) if os.path.exists(path) else {}
    time.sleep(options.get("load_delay", 0))
    if options.get("fail"):
        raise RuntimeError(options["fail"])
    return PackedForest.load(os.path.join(model_dir, "forest.npz"))
"""


def options_file(**options: Any) -> dict[str, bytes]:
    import json

    return {"options.json": json.dumps(options).encode()}


def bench_model(seed: int) -> tuple[Any, bytes]:
    """A notebook-sized model (100 trees, min_samples_leaf=3, 600 rows) and its ``model.tar.gz`` for benchmarks.

    Returns the fitted model (its ``predict`` is the expected answer) and the artifact the project's
    ``training/inference.py`` serves.
    """
    model = fit_forest(seed=seed, n_rows=600, n_estimators=100, min_samples_leaf=3)
    return model, model_tar_gz(model)
