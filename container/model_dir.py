"""The ``url`` of ``POST /models``: the directory it names, and whether that directory may be loaded.

SageMaker downloads and extracts each model to ``/opt/ml/models/{model_name}/model`` and passes that
absolute path as ``url`` (multi-model-server resolves it against ``model_store=/`` and refuses
``..``). Here a url must be an absolute path without ``..`` whose real path (symbolic links resolved)
lies under the model root; then the directory is walked once, without following links, before any
of its files is opened: links must stay inside the model directory, every entry must be a regular
file or a directory (a FIFO would block ``open()`` forever, a device read forever), and the regular
files must add up to at most the configured size (a sparse file counts at its apparent size).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from container.errors import BadRequest, InvalidModel, ModelNotFound

MAX_URL_CHARS = 4096
MAX_ENTRIES = 10_000
MAX_DEPTH = 32


@dataclass(frozen=True)
class ModelDir:
    path: Path
    # The regular files' bytes: the load's memory reservation until model_fn's result is measured.
    file_bytes: int
    # code/<program> when the model brings its own inference program.
    program: Path | None


def resolve(url: object, root: Path) -> Path:
    """The real directory ``url`` names under ``root``: 400 when malformed or outside, 404 when absent."""
    if not isinstance(url, str) or not url:
        raise BadRequest("url must be a non-empty string: the model's directory, e.g. /opt/ml/models/NAME/model")
    if len(url) > MAX_URL_CHARS:
        raise BadRequest(f"url is {len(url)} characters long; at most {MAX_URL_CHARS} are accepted")
    if not url.isprintable():
        raise BadRequest("url must not contain control characters")
    if not url.startswith("/"):
        raise BadRequest(f"url must be an absolute path, got {url!r}")
    if ".." in PurePosixPath(url).parts:
        raise BadRequest(f"url must not contain '..': {url!r}")
    path = Path(os.path.realpath(url))
    if not path.is_relative_to(root) and not path.is_relative_to(os.path.realpath(root)):
        raise BadRequest(f"url {url!r} is not a directory under the model root {root}")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelNotFound(f"Model directory not found: {url}") from None
    except OSError as error:
        raise BadRequest(f"url {url!r} cannot be read: {error.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise BadRequest(f"url {url!r} is not a directory")
    return path


def inspect(path: Path, *, max_bytes: int, program: str) -> ModelDir:
    """Walk ``path`` (links not followed) and refuse what no model needs; see the module docstring."""
    total = 0
    entries = 0
    pending: list[tuple[Path, int]] = [(path, 0)]
    while pending:
        directory, depth = pending.pop()
        try:
            listing = list(os.scandir(directory))
        except OSError as error:
            raise InvalidModel(f"{_shown(directory, path)} cannot be listed: {error.strerror}") from None
        entries += len(listing)
        if entries > MAX_ENTRIES:
            raise InvalidModel(f"the model directory holds more than {MAX_ENTRIES} entries")
        for entry in listing:
            entry_path = Path(entry.path)
            try:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    target = Path(os.path.realpath(entry_path))
                    if not target.is_relative_to(path):
                        raise InvalidModel(f"{_shown(entry_path, path)} links outside the model directory")
                    info = os.stat(target)
                    if stat.S_ISDIR(info.st_mode):
                        continue  # the directory itself is walked where it really is
            except FileNotFoundError:
                raise InvalidModel(f"{_shown(entry_path, path)} is a dangling link") from None
            except OSError as error:
                raise InvalidModel(f"{_shown(entry_path, path)} cannot be read: {error.strerror}") from None
            if stat.S_ISDIR(info.st_mode):
                if depth + 1 > MAX_DEPTH:
                    raise InvalidModel(f"the model directory is nested deeper than {MAX_DEPTH} levels")
                pending.append((entry_path, depth + 1))
            elif stat.S_ISREG(info.st_mode):
                total += info.st_size
            else:
                raise InvalidModel(f"{_shown(entry_path, path)} is not a regular file or a directory")
        if total > max_bytes:
            raise InvalidModel(f"the model directory holds more than {max_bytes} bytes of files")
    code = path / "code" / program
    return ModelDir(path=path, file_bytes=total, program=code if code.is_file() else None)


def _shown(entry: Path, root: Path) -> str:
    """An entry's path inside the model directory: what the caller knows, not this machine's layout."""
    relative = entry.relative_to(root).as_posix()
    return "the model directory" if relative == "." else repr(relative)
