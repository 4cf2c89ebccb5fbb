"""Locate other CPython versions (pyenv's installs, then PATH) for tests that need the exact runtime."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


def find_python(version: str) -> str | None:
    """A working ``python{version}`` executable, or None. pyenv shims that exit 127 do not count."""
    candidates = [
        str(path) for path in sorted(PYENV_ROOT.glob(f"versions/{version}.*/bin/python{version}"), reverse=True)
    ]
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        try:
            if subprocess.run([candidate, "--version"], capture_output=True, timeout=30).returncode == 0:
                return candidate
        except OSError:
            continue
    return None
