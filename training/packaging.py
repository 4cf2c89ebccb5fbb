"""Archives SageMaker expects: ``model.tar.gz`` (model dir contents at the root) and ``sourcedir.tar.gz``.

Archives are reproducible (``house_prices.archives``), so the same model bytes always give the same sha256.

CLI::

    python -m training.packaging sourcedir --out build/sourcedir.tar.gz
    python -m training.packaging model --model-dir DIR --out model.tar.gz
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import house_prices
import packed_forest
from house_prices.archives import files_under, package_model, write_tar_gz

TRAINING_DIR = Path(__file__).resolve().parent
ENTRY_POINT = "train.py"
SERVING_PROGRAM = "inference.py"

__all__ = ["ENTRY_POINT", "SERVING_PROGRAM", "build_sourcedir", "package_model"]


def build_sourcedir(dest: str | Path) -> Path:
    """``sourcedir.tar.gz``: train.py, inference.py and the ``house_prices`` and ``packed_forest`` packages.

    SageMaker unpacks it into the working directory of the training script and of the model server
    (SAGEMAKER_SUBMIT_DIRECTORY), which is on ``sys.path``, so ``import house_prices`` works there.
    """
    members = [(TRAINING_DIR / ENTRY_POINT, ENTRY_POINT), (TRAINING_DIR / SERVING_PROGRAM, SERVING_PROGRAM)]
    for package in (house_prices, packed_forest):
        package_dir = Path(package.__file__ or "").resolve().parent
        members += [
            (path, f"{package_dir.name}/{arcname}")
            for path, arcname in files_under(package_dir)
            if path.suffix == ".py"
        ]
    return write_tar_gz(Path(dest), members)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.packaging", description="Build SageMaker archives.")
    commands = parser.add_subparsers(dest="command", required=True)
    sourcedir = commands.add_parser("sourcedir", help="train.py + inference.py + house_prices")
    sourcedir.add_argument("--out", type=Path, default=Path("build/sourcedir.tar.gz"))
    model = commands.add_parser("model", help="model.tar.gz from a model directory")
    model.add_argument("--model-dir", type=Path, required=True)
    model.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    path = build_sourcedir(args.out) if args.command == "sourcedir" else package_model(args.model_dir, args.out)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
