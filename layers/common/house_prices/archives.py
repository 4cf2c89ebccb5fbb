"""Reproducible ``.tar.gz`` archives: the one writer of ``model.tar.gz`` and ``sourcedir.tar.gz``.

Sorted members, zeroed times and owners, no gzip timestamp: the same files always give the same
bytes, hence the same sha256 (and the same model version digest). Standard library only, because
``train.py`` packs each segment's model with it inside SageMaker's scikit-learn containers (Python 3.9+).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterable
from pathlib import Path

_SKIP_PARTS = {"__pycache__"}
# Level 1: a forest's node arrays gzip 3.8 x faster than at level 6 for 9 % more bytes (measured on
# 100-tree forests), which matters when one job packs hundreds of segments; artifacts are ~0.2 MB.
COMPRESS_LEVEL = 1


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def write_tar_gz(dest: str | Path, members: Iterable[tuple[Path, str]]) -> Path:
    """Write ``(source file, name in archive)`` pairs to ``dest`` atomically (a temp file, then rename)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for source, arcname in sorted(members, key=lambda member: member[1]):
            archive.add(str(source), arcname=arcname, recursive=False, filter=_normalised)
    tmp = dest.with_name(dest.name + ".tmp")
    with (
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=COMPRESS_LEVEL) as gz,
    ):
        gz.write(buffer.getvalue())
    tmp.replace(dest)
    return dest


def files_under(root: Path) -> list[tuple[Path, str]]:
    """Every file below ``root`` with its POSIX path relative to it (no ``__pycache__``, no ``.pyc``)."""
    return [
        (path, path.relative_to(root).as_posix())
        for path in sorted(root.rglob("*"))
        if path.is_file() and not _SKIP_PARTS.intersection(path.relative_to(root).parts) and path.suffix != ".pyc"
    ]


def package_model(model_dir: str | Path, dest: str | Path) -> Path:
    """Pack the contents of ``model_dir`` as SageMaker packs SM_MODEL_DIR: files at the archive root."""
    model_dir = Path(model_dir)
    members = files_under(model_dir)
    if not members:
        raise ValueError(f"model directory {model_dir} is empty")
    return write_tar_gz(Path(dest), members)
