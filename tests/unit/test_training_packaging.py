"""model.tar.gz and sourcedir.tar.gz layouts."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from training import packaging


def names(archive: Path) -> list[str]:
    with tarfile.open(archive, "r:gz") as tar:
        return sorted(tar.getnames())


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "model.joblib").write_bytes(b"model-bytes")
    (directory / "metrics.json").write_text("{}")
    return directory


def test_model_archive_has_files_at_the_root(model_dir: Path, tmp_path: Path) -> None:
    archive = packaging.package_model(model_dir, tmp_path / "out" / "model.tar.gz")
    assert names(archive) == ["metrics.json", "model.joblib"]
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.getmember("model.joblib")
        assert member.isfile()
        assert tar.extractfile(member).read() == b"model-bytes"  # type: ignore[union-attr]


def test_model_archive_keeps_subdirectories_relative(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "extra").mkdir()
    (model_dir / "extra" / "notes.txt").write_text("x")
    assert names(packaging.package_model(model_dir, tmp_path / "m.tar.gz")) == [
        "extra/notes.txt",
        "metrics.json",
        "model.joblib",
    ]


def test_model_archive_is_reproducible(model_dir: Path, tmp_path: Path) -> None:
    first = packaging.package_model(model_dir, tmp_path / "a.tar.gz").read_bytes()
    (model_dir / "model.joblib").touch()  # a newer mtime must not change the archive
    assert packaging.package_model(model_dir, tmp_path / "b.tar.gz").read_bytes() == first


def test_empty_model_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is empty"):
        packaging.package_model(tmp_path, tmp_path / "m.tar.gz")


def test_sourcedir_has_scripts_and_package_at_the_root(tmp_path: Path) -> None:
    assert packaging.main(["sourcedir", "--out", str(tmp_path / "sourcedir.tar.gz")]) == 0
    contents = names(tmp_path / "sourcedir.tar.gz")
    assert {"train.py", "inference.py", "house_prices/__init__.py", "house_prices/schema.py"} <= set(contents)
    assert "house_prices/naming.py" in contents
    assert all(name.endswith(".py") and "__pycache__" not in name for name in contents)
    assert all(name.count("/") <= 1 for name in contents)
