"""Cached virtualenvs that reproduce the SageMaker scikit-learn image's serving Python and packages.

Each venv is built once per (interpreter, requirements) under ``build/`` from pyenv's Python of the
image, and rebuilt when its requirements change (a stamp keyed by their hash). Tests run code in it as
a subprocess, the way the container would run ``inference.py``.

- ``image_python()``: ``requirements/sagemaker-image.txt`` (scikit-learn, numpy) on Python 3.10.
- ``serving_stack_python(tag)``: the tag's serving stack as ``ops/images.json`` records it
  (its Python, numpy, sagemaker-inference and multi-model-server, installed without their optional
  dependencies: only the modules of the request path are imported), for ``tests/toolkit_harness.py``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ops.images import load_table
from tests.pythons import find_python

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements" / "sagemaker-image.txt"
VENV = ROOT / "build" / "sagemaker-image-venv"
IMAGE_PYTHON = "3.10"
# What the request path of sagemaker-inference 1.2.0 and multi-model-server 1.1.1 imports besides numpy.
# The image pins six==1.16.0 and retrying==1.3.3; its psutil 5.7.2 has no wheels for these Pythons, and
# MMS only imports psutil (for host metrics), so any recent one does.
SERVING_STACK_SUPPORT = ("six==1.16.0", "future==1.0.0", "retrying==1.3.3", "psutil==7.2.2")


def image_python() -> Path | None:
    """The venv's python, building it first if needed; None when Python 3.10 is not installed."""
    return cached_venv(VENV, IMAGE_PYTHON, ["-r", str(REQUIREMENTS)], REQUIREMENTS.read_bytes())


def serving_stack_python(image_version: str) -> Path | None:
    """A venv with ``image_version``'s serving stack; None when its Python is not installed."""
    facts = load_table().containers[image_version]
    requirements = [
        f"numpy=={facts['numpy']}",
        f"sagemaker-inference=={facts['sagemaker-inference']}",
        f"multi-model-server=={facts['multi-model-server']}",
        *SERVING_STACK_SUPPORT,
    ]
    key = "\n".join([facts["python"], *requirements]).encode()
    venv = ROOT / "build" / f"serving-stack-{facts['python']}-{hashlib.sha256(key).hexdigest()[:8]}"
    return cached_venv(venv, facts["python"], ["--no-deps", *requirements], key)


def cached_venv(venv: Path, python_version: str, pip_args: Sequence[str], key: bytes) -> Path | None:
    """``venv``'s python after ``pip install pip_args`` (once per ``key``); None without that Python."""
    base = find_python(python_version)
    if base is None:
        return None
    stamp = venv / f".installed-{hashlib.sha256(key).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if not stamp.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pip_args],
            check=True,
            timeout=900,
        )
        stamp.touch()
    return python
