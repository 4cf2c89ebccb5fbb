"""A model trained with this venv's scikit-learn serves identically on the SageMaker image's versions.

The venv trains with scikit-learn 1.9; the template deploys the 1.4-2 image (Python 3.10, scikit-learn
1.4.2, numpy 2.1). A pickle could not cross that gap; the packed forest must, bit for bit, with no
pickle in the model directory and no scikit-learn imported to serve it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor

import packed_forest
from house_prices import naming, schema
from packed_forest.pack import pack_forest
from tests.sagemaker_image import ROOT, image_python
from training import data

SERVE = """
import json, sys
sys.path[:0] = [sys.argv[2] + "/training", sys.argv[2] + "/layers/common", sys.argv[2]]
import numpy, sklearn
import inference
model = inference.model_fn(sys.argv[1])
body = open(sys.argv[3]).read()
prices = inference.predict_fn(inference.input_fn(body, "text/csv"), model)
print(json.dumps({
    "prices": [float(p).hex() for p in prices],
    "numpy": numpy.__version__, "sklearn": sklearn.__version__, "python": sys.version.split()[0],
    "model_type": type(model).__name__,
}))
"""


@pytest.fixture(scope="module")
def python() -> Path:
    found = image_python()
    if found is None:
        pytest.skip("python3.10 (the SageMaker image's interpreter) is not installed")
    return found


def test_a_venv_trained_packed_model_predicts_identically_on_the_image_versions(python: Path, tmp_path: Path) -> None:
    # Given a forest trained here (scikit-learn 1.9) and written as train.py writes it: forest.npz only
    city = data.generate_city("Dallas_TX")
    train, val = city.split_rows("train"), city.split_rows("val")
    model = RandomForestRegressor(n_estimators=50, min_samples_leaf=3, random_state=4, n_jobs=1)
    model.fit(train[:, 1:], train[:, 0])
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    packed_forest.write(model_dir / naming.PACKED_MODEL_FILENAME, pack_forest(model, schema.FEATURE_NAMES).arrays)
    rows = val[:, 1:]
    body = tmp_path / "body.csv"
    body.write_text(schema.rows_to_csv(rows.tolist()))
    # When the serving hooks run under Python 3.10 with scikit-learn 1.4.2 and numpy 2.1
    completed = subprocess.run(
        [str(python), "-I", "-c", SERVE, str(model_dir), str(ROOT), str(body)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    served = json.loads(completed.stdout)
    # Then it ran on the image's versions, from a model directory with no pickle in it
    assert (served["python"][:4], served["sklearn"], served["numpy"][:3]) == ("3.10", "1.4.2", "2.1")
    assert served["model_type"] == "PackedForest"
    assert [path.name for path in model_dir.iterdir()] == [naming.PACKED_MODEL_FILENAME]
    # And every price equals this venv's scikit-learn prediction to the last bit
    expected = model.predict(np.loadtxt(body, delimiter=",", ndmin=2))
    assert [float.fromhex(p) for p in served["prices"]] == expected.tolist()
