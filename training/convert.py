"""Convert a pickled artifact (``model.joblib`` in ``model.tar.gz``) into a packed, pickle-free one.

For models trained or published before the packed format (or by your own code)::

    python -m training.convert model.tar.gz --out packed.tar.gz [--keep-joblib]
    python -m training.convert path/to/model_dir --out packed.tar.gz

This *unpickles* the input, which runs whatever code the pickle holds: convert only artifacts you
trust (your own). The output holds ``forest.npz`` and ``metrics.json`` (with ``model_format`` added),
and ``model.joblib`` only with ``--keep-joblib``. Publish it like any training output.

An artifact that holds a packed ``forest.npz`` and no pickle is upgraded instead: its forest is read
(and checked) like any served one and rewritten in the current format version — nothing unpickles.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import packed_forest
from house_prices import naming, schema
from house_prices.artifacts import member_problem
from packed_forest import PackedForest
from packed_forest.pack import pack_forest
from training.packaging import package_model


def _extract(archive_path: Path, into: Path) -> None:
    with tarfile.open(archive_path, "r:gz") as archive:
        for member in archive.getmembers():
            problem = member_problem(member)
            if problem:
                raise ValueError(f"archive member {member.name!r} {problem}")
        archive.extractall(into, filter="data")


def convert_model_dir(model_dir: Path, *, keep_joblib: bool = False) -> dict[str, Any]:
    """Write ``forest.npz`` (current format version) in ``model_dir``; returns the updated metrics.

    From ``model.joblib`` if there is one, else by rewriting an older-version ``forest.npz``.
    """
    import joblib

    pickled = model_dir / naming.PICKLED_MODEL_FILENAME
    packed_path = model_dir / naming.PACKED_MODEL_FILENAME
    metrics_path = model_dir / naming.METRICS_FILENAME
    metrics: dict[str, Any] = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    features = metrics.get("features", list(schema.FEATURE_NAMES))
    if pickled.is_file():
        packed = pack_forest(joblib.load(pickled), features)
    elif packed_path.is_file():
        packed = PackedForest.load(packed_path)  # an older format version, read and renumbered
        features = list(packed.feature_names)
    else:
        raise ValueError(
            f"{model_dir} holds no {naming.PICKLED_MODEL_FILENAME} (or {naming.PACKED_MODEL_FILENAME}) to convert"
        )
    packed_forest.write(packed_path, packed.arrays)
    metrics.setdefault("features", list(features))
    metrics["model_format"] = {"name": packed_forest.FORMAT_NAME, "version": packed_forest.FORMAT_VERSION}
    metrics_path.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    if not keep_joblib:
        pickled.unlink(missing_ok=True)
    return metrics


def convert(source: Path, out: Path, *, keep_joblib: bool = False) -> Path:
    with tempfile.TemporaryDirectory(prefix="convert-") as scratch:
        model_dir = Path(scratch) / "model"
        if source.is_dir():
            shutil.copytree(source, model_dir)
        else:
            model_dir.mkdir()
            _extract(source, model_dir)
        convert_model_dir(model_dir, keep_joblib=keep_joblib)
        return package_model(model_dir, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.convert", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="model.tar.gz or an unpacked model directory")
    parser.add_argument("--out", type=Path, required=True, help="where to write the packed model.tar.gz")
    parser.add_argument("--keep-joblib", action="store_true", help="keep model.joblib in the output")
    args = parser.parse_args(argv)
    try:
        print(convert(args.source, args.out, keep_joblib=args.keep_joblib))
    except (ValueError, OSError, tarfile.TarError, packed_forest.PackedForestError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
