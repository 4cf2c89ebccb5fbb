"""A cached virtualenv that reproduces the SageMaker scikit-learn image's serving Python and packages.

Built once per requirements file (``requirements/sagemaker-image.txt``, keyed by its hash) under
``build/sagemaker-image-venv`` from pyenv's Python 3.10, the image's interpreter. Tests run code in it
as a subprocess, the way the container would run ``inference.py``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from tests.pythons import find_python

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements" / "sagemaker-image.txt"
VENV = ROOT / "build" / "sagemaker-image-venv"
IMAGE_PYTHON = "3.10"


def image_python() -> Path | None:
    """The venv's python, building it first if needed; None when Python 3.10 is not installed."""
    base = find_python(IMAGE_PYTHON)
    if base is None:
        return None
    stamp = VENV / f".installed-{hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]}"
    python = VENV / "bin" / "python"
    if not stamp.exists():
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
            check=True,
            timeout=900,
        )
        stamp.touch()
    return python
