"""``POST /models``'s url and the directory it names: what is refused, with which status, before any file opens."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from container import model_dir
from container.errors import BadRequest, InvalidModel, ModelNotFound


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "city" / "model").mkdir(parents=True)
    (root / "city" / "model" / "forest.npz").write_bytes(b"x" * 100)
    return root


def test_a_directory_under_the_root_resolves_to_its_real_path(root: Path) -> None:
    assert model_dir.resolve(str(root / "city" / "model"), root) == (root / "city" / "model").resolve()


@pytest.mark.parametrize(
    "url",
    ["", "relative/model", "/models/../etc", "/models/a\x00b", "/models/a\nb", "/" + "a" * 5000, 7, None],
    ids=["empty", "relative", "dotdot", "nul", "newline", "long", "number", "none"],
)
def test_a_malformed_url_is_400(root: Path, url: object) -> None:
    with pytest.raises(BadRequest):
        model_dir.resolve(url, root)


def test_a_directory_outside_the_root_is_400_even_through_a_link_inside_it(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)

    with pytest.raises(BadRequest, match="not a directory under the model root"):
        model_dir.resolve(str(outside), root)
    with pytest.raises(BadRequest, match="not a directory under the model root"):
        model_dir.resolve(str(root / "escape"), root)


def test_a_missing_directory_is_404_and_a_file_is_400(root: Path) -> None:
    with pytest.raises(ModelNotFound):
        model_dir.resolve(str(root / "nobody" / "model"), root)
    with pytest.raises(BadRequest, match="not a directory"):
        model_dir.resolve(str(root / "city" / "model" / "forest.npz"), root)


def test_inspect_adds_up_the_files_and_finds_the_model_s_own_program(root: Path) -> None:
    directory = root / "city" / "model"
    (directory / "code").mkdir()
    (directory / "code" / "inference.py").write_text("x = 1\n")
    (directory / "alias.npz").symlink_to(directory / "forest.npz")

    found = model_dir.inspect(directory, max_bytes=10_000, program="inference.py")

    assert found.file_bytes == 100 + 6 + 100
    assert found.program == directory / "code" / "inference.py"
    assert model_dir.inspect(directory, max_bytes=10_000, program="serve.py").program is None


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: (d / "link").symlink_to("/etc/passwd"), "links outside"),
        (lambda d: (d / "link").symlink_to(d.parent), "links outside"),
        (lambda d: (d / "link").symlink_to(d / "missing"), "dangling"),
        (lambda d: os.mkfifo(d / "pipe"), "not a regular file"),
        (lambda d: (d / "big").open("wb").truncate(1 << 40), "more than"),
    ],
    ids=["file-link-out", "parent-link", "dangling", "fifo", "sparse-terabyte"],
)
def test_inspect_refuses_what_no_model_needs(root: Path, make: object, reason: str) -> None:
    directory = root / "city" / "model"
    make(directory)  # type: ignore[operator]

    with pytest.raises(InvalidModel, match=reason):
        model_dir.inspect(directory, max_bytes=1 << 30, program="inference.py")


def test_inspect_bounds_the_entries_and_the_depth(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = root / "city" / "model"
    monkeypatch.setattr(model_dir, "MAX_ENTRIES", 5)
    for index in range(5):
        (directory / f"f{index}").write_bytes(b"")
    with pytest.raises(InvalidModel, match="more than 5 entries"):
        model_dir.inspect(directory, max_bytes=1 << 30, program="inference.py")

    deep = root / "deep" / "model"
    nested = deep.joinpath(*["d"] * 4)
    nested.mkdir(parents=True)
    monkeypatch.setattr(model_dir, "MAX_DEPTH", 3)
    with pytest.raises(InvalidModel, match="deeper than 3"):
        model_dir.inspect(deep, max_bytes=1 << 30, program="inference.py")
