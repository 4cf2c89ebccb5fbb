"""Archives SageMaker expects: ``model.tar.gz`` (model dir contents at the root) and ``sourcedir.tar.gz``.

Archives are reproducible (sorted members, zeroed times and owners, no gzip timestamp), so the same
model bytes always give the same sha256.

CLI::

    python -m training.packaging sourcedir --out build/sourcedir.tar.gz
    python -m training.packaging model --model-dir DIR --out model.tar.gz
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import house_prices
import packed_forest

TRAINING_DIR = Path(__file__).resolve().parent
ENTRY_POINT = "train.py"
SERVING_PROGRAM = "inference.py"
_SKIP_PARTS = {"__pycache__"}


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def _write_tar_gz(dest: Path, members: Iterable[tuple[Path, str]]) -> Path:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for source, arcname in sorted(members, key=lambda member: member[1]):
            archive.add(source, arcname=arcname, recursive=False, filter=_normalised)
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buffer.getvalue())
    tmp.replace(dest)
    return dest


def _files_under(root: Path) -> list[tuple[Path, str]]:
    return [
        (path, path.relative_to(root).as_posix())
        for path in root.rglob("*")
        if path.is_file() and not _SKIP_PARTS.intersection(path.relative_to(root).parts) and path.suffix != ".pyc"
    ]


def package_model(model_dir: str | Path, dest: str | Path) -> Path:
    """Pack the contents of ``model_dir`` as SageMaker packs SM_MODEL_DIR: files at the archive root."""
    model_dir = Path(model_dir)
    members = _files_under(model_dir)
    if not members:
        raise ValueError(f"model directory {model_dir} is empty")
    return _write_tar_gz(Path(dest), members)


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
            for path, arcname in _files_under(package_dir)
            if path.suffix == ".py"
        ]
    return _write_tar_gz(Path(dest), members)


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
