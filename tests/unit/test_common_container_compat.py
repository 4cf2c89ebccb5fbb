"""The code SageMaker runs inside its scikit-learn containers must work on their Pythons.

Each supported image tag's Python comes from ops/images.json (1.2-1: 3.9, 1.4-2: 3.10,
1.4-2-py312: 3.12); `sourcedir.tar.gz` carries train.py,
inference.py and the stdlib-only parts of `house_prices` (drift too: train.py builds references) there.
A `datetime.UTC` or `zip(strict=)` slipping into them would only fail on AWS, so import them under those
interpreters here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ops import images
from tests.pythons import find_python

ROOT = Path(__file__).resolve().parents[2]
CONTAINER_PYTHONS = sorted({facts["python"] for facts in images.load_table().containers.values()})


@pytest.mark.parametrize("version", CONTAINER_PYTHONS)
def test_container_side_code_imports_on_the_container_python(version: str) -> None:
    python = find_python(version)
    if python is None:
        pytest.skip(f"python{version} is not installed")
    # Given the interpreter of a SageMaker sklearn image and only the layer on its path
    # When the stdlib-only layer modules are used and the scripts are byte-compiled
    script = (
        "from datetime import datetime, timezone\n"
        "from house_prices import archives, drift, errors, naming, schema\n"
        "v = naming.make_version(datetime(2026, 1, 1, tzinfo=timezone.utc), 'ab' * 32)\n"
        "assert naming.target_model('Chicago_IL', v) == 'Chicago_IL.' + naming.validate_version(v) + '.tar.gz'\n"
        "assert schema.parse_houses({'YEAR_BUILT': 2000, 'SQUARE_FEET': 2000, 'NUM_BEDROOMS': 3,"
        " 'NUM_BATHROOMS': 2.5, 'LOT_ACRES': 1.0, 'GARAGE_SPACES': 1})\n"
        "assert drift.build_reference([1.0, 1.0, 1.0, 2.0]).counts == (0, 3, 0, 0, 1)\n"
        "assert drift.drift_report({'A': drift.Reference((1.0,), (50, 50))}, {'A': [25, 75]}).count == 100\n"
        "for path in ('training/train.py', 'training/inference.py'):\n"
        "    compile(open(path).read(), path, 'exec')\n"
        "print('ok')\n"
    )
    completed = subprocess.run(
        [python, "-I", "-c", f"import sys; sys.path.insert(0, 'layers/common')\n{script}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it works there too
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
