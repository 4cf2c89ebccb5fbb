"""The local endpoint answers as the scikit-learn image's real serving stack does, case by case.

For each inference image tag (``ops/images.json``) whose Python is installed: the same requests
go through the image's real serving code in multi-model mode (``tests/toolkit_harness.py`` in a cached
venv with the tag's sagemaker-inference, multi-model-server and numpy, the container's vendored
``handler_service`` and its decoder patch), and through the local endpoint (real sockets, boto3,
moto S3) emulating that tag. A 200 must match body and Content-Type; an error must match the status
and body that SageMaker reports as ModelError's OriginalStatusCode and OriginalMessage; a request the
image never answers must be a ModelError with status 0 locally.

Two programs: the project's ``training/inference.py``, and one with only ``model_fn`` so that the
container's default hooks answer.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from endpoint.app import create_app
from endpoint.config import EndpointConfig, ModelDataUrl
from house_prices import naming, schema
from ops.images import load_table
from testkit.aws import moto_s3, s3_client, sagemaker_runtime
from testkit.models import fit_forest, model_tar_gz, tar_gz
from testkit.servers import serve_in_thread
from tests.sagemaker_image import ROOT, serving_stack_python

pytestmark = pytest.mark.slow

BUCKET = "toolkit-fidelity"
PREFIX = "mme/"
ENDPOINT = "fidelity"
VENDOR = ROOT / "vendor" / "sagemaker-scikit-learn-container"
HARNESS = ROOT / "tests" / "toolkit_harness.py"
DEFAULTS_PROGRAM = """
import os
from packed_forest import PackedForest


def model_fn(model_dir):
    return PackedForest.load(os.path.join(model_dir, "forest.npz"))
"""
RAISING_PROGRAM = """
import os
import numpy as np
from packed_forest import PackedForest


def model_fn(model_dir):
    return PackedForest.load(os.path.join(model_dir, "forest.npz"))


def input_fn(body, content_type):
    if body == "ok":
        return np.zeros((1, 6))
    raise ValueError("first line\\nsecond line" if body == "two lines" else "")


def predict_fn(data, model, context):
    return model.predict(data)
"""
ROWS = np.random.default_rng(5).uniform(1, 5, size=(3, len(schema.FEATURE_NAMES))) * [500, 1000, 1, 1, 1, 1]


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    content_type: str | None
    accept: str | None
    body: bytes


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


CSV_ROWS = schema.rows_to_csv(ROWS.tolist()).encode()
ONE_ROW = CSV_ROWS.splitlines()[0]
OBJECTS = npy(np.array([{"a": 1}], dtype=object), allow_pickle=True)
PROJECT_CASES = [
    Case("csv rows, no Accept", "good", "text/csv", None, CSV_ROWS),
    Case("csv one row", "good", "text/csv", "application/json", ONE_ROW),
    Case("csv with charset", "good", "text/csv; charset=utf-8", None, CSV_ROWS),
    Case("csv, Accept */*", "good", "text/csv", "*/*", CSV_ROWS),
    Case("csv, Accept csv", "good", "text/csv", "text/csv", CSV_ROWS),
    Case("csv, Accept list", "good", "text/csv", "text/html, application/x-npy", CSV_ROWS),
    Case("json rows", "good", "application/json", None, json.dumps(ROWS.tolist()).encode()),
    Case("json one row", "good", "application/json", "text/csv", json.dumps(ROWS[0].tolist()).encode()),
    Case("json with charset", "good", "application/json; charset=UTF-8", None, json.dumps(ROWS.tolist()).encode()),
    Case("npy rows", "good", "application/x-npy", "application/x-npy", npy(ROWS)),
    Case("npy of objects", "good", "application/x-npy", None, OBJECTS),
    Case("wrong column count", "good", "text/csv", None, b"1,2,3"),
    Case("not a number", "good", "text/csv", None, b"1,2,3,4,5,abc"),
    Case("not finite", "good", "application/json", None, b"[[1, 2, 3, 4, 5, NaN]]"),
    Case("bad json", "good", "application/json", None, b"[[1, 2"),
    Case("not utf-8", "good", "text/csv", None, b"\xff\xfe1,2"),
    Case("unsupported content type", "good", "text/plain", None, CSV_ROWS),
    Case("no content type", "good", None, None, CSV_ROWS),
    Case("unsupported accept", "good", "text/csv", "image/png", CSV_ROWS),
    Case("pickle-only model", "pickle-only", "text/csv", None, CSV_ROWS),
    Case("no model file", "empty", "text/csv", None, CSV_ROWS),
]
DEFAULTS_CASES = [
    Case("defaults: csv rows", "good", "text/csv", None, CSV_ROWS),
    Case("defaults: csv one row is reshaped", "good", "text/csv", "text/csv", ONE_ROW),
    Case("defaults: json one row is reshaped", "good", "application/json", None, json.dumps(ROWS[0].tolist()).encode()),
    Case("defaults: npy rows", "good", "application/x-npy", "application/x-npy", npy(ROWS)),
    Case("defaults: wrong column count", "good", "text/csv", None, b"1,2,3"),
    Case("defaults: csv with charset", "good", "text/csv; charset=utf-8", None, CSV_ROWS),
    Case("defaults: unsupported content type", "good", "text/plain", None, CSV_ROWS),
    Case("defaults: unsupported accept", "good", "text/csv", "image/png", CSV_ROWS),
    Case("defaults: model_fn raises", "pickle-only", "text/csv", None, CSV_ROWS),
]
RAISING_CASES = [
    Case("hook raises two lines", "good", "text/csv", None, b"two lines"),
    Case("hook raises no message", "good", "text/csv", None, b"1"),
    Case("hook wants a context", "good", "text/csv", None, b"ok"),
]


def _inference_images() -> list[str]:
    return list(load_table().versions["inference"])


@pytest.fixture(scope="module", params=_inference_images())
def image_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def stack_python(image_version: str) -> Path:
    python = serving_stack_python(image_version)
    if python is None:
        version = load_table().containers[image_version]["python"]
        pytest.skip(f"python{version} (image {image_version}) is not installed")
    return python


@pytest.fixture(scope="module")
def artifacts() -> dict[str, bytes]:
    forest = fit_forest(seed=11, n_features=len(schema.FEATURE_NAMES))
    return {
        "good": model_tar_gz(forest),
        "pickle-only": tar_gz({naming.PICKLED_MODEL_FILENAME: b"\x80\x04not-unpickled"}),
        "empty": tar_gz({"notes.txt": b"no model here"}),
    }


@pytest.fixture(scope="module")
def s3_url(artifacts: dict[str, bytes]) -> Iterator[str]:
    with moto_s3(BUCKET) as url:
        s3 = s3_client(url)
        for name, body in artifacts.items():
            s3.put_object(Bucket=BUCKET, Key=PREFIX + name, Body=body)
        yield url


@pytest.mark.parametrize(
    ("program", "cases"),
    [("project", PROJECT_CASES), ("defaults", DEFAULTS_CASES), ("raising", RAISING_CASES)],
)
def test_the_local_endpoint_answers_as_the_image_does(
    program: str,
    cases: list[Case],
    image_version: str,
    stack_python: Path,
    artifacts: dict[str, bytes],
    s3_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the program, as the image would import it, and the models unpacked as SageMaker would
    program_dir = ROOT / "training" if program == "project" else tmp_path / "code"
    if program != "project":
        program_dir.mkdir()
        (program_dir / "inference.py").write_text(DEFAULTS_PROGRAM if program == "defaults" else RAISING_PROGRAM)
    model_dirs = _unpack(artifacts, tmp_path / "models")
    # When the image's serving code answers every case
    expected = _run_image(stack_python, image_version, program_dir, model_dirs, cases, tmp_path)
    # And the local endpoint, emulating that image, answers them over the wire
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_url)
    config = EndpointConfig(
        model_data_url=ModelDataUrl.parse(f"s3://{BUCKET}/{PREFIX}"),
        endpoint_name=ENDPOINT,
        submit_directory=program_dir,
        image_version=image_version,
        cache_dir=tmp_path / "cache",
    )
    with serve_in_thread(create_app(config)) as url:
        client = sagemaker_runtime(url, retries={"total_max_attempts": 1})
        actual = [_invoke(client, case) for case in cases]
    # Then each answer is the image's: status, body and content type
    mismatches = [
        f"{case.name}: image {want} != local {got}"
        for case, want, got in zip(cases, expected, actual, strict=True)
        if want != got
    ]
    assert not mismatches, "\n".join(mismatches)
    # And the cases did exercise successes, errors and (for the default hooks) unanswered requests
    outcomes = {answer[0] for answer in expected}
    assert outcomes >= ({200, 500} if program == "project" else {500, "no-response"})


def _run_image(
    python: Path, image_version: str, program_dir: Path, models: dict[str, Path], cases: list[Case], tmp_path: Path
) -> list[tuple[Any, ...]]:
    facts = load_table().containers[image_version]
    patch = VENDOR / "patches" / image_version / facts["patched"] if facts.get("patched") else None
    spec = {
        "program": "inference.py",
        "default_accept": "application/json",
        "python_path": [str(VENDOR / "serving"), str(program_dir), str(ROOT / "layers" / "common"), str(ROOT)],
        "patched_decoder": str(patch) if patch else None,
        "models": {name: str(path) for name, path in models.items()},
        "cases": [
            {"model": c.model, "content_type": c.content_type, "accept": c.accept, "body_hex": c.body.hex()}
            for c in cases
        ],
    }
    spec_path, answers_path = tmp_path / "spec.json", tmp_path / "answers.json"
    spec_path.write_text(json.dumps(spec))
    completed = subprocess.run(
        [str(python), "-I", str(HARNESS), str(spec_path), str(answers_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    answers = json.loads(answers_path.read_text())
    return [_from_image(answer) for answer in answers]


def _from_image(answer: dict[str, Any]) -> tuple[Any, ...]:
    if answer["outcome"] == "no-response":
        return ("no-response",)
    body = bytes.fromhex(answer["body_hex"])
    if answer["status"] == 200:
        return (200, answer["content_type"], body)
    return (answer["status"], body.decode("utf-8"))


def _invoke(client: Any, case: Case) -> tuple[Any, ...]:
    params: dict[str, Any] = {"EndpointName": ENDPOINT, "TargetModel": case.model, "Body": case.body}
    if case.content_type is not None:
        params["ContentType"] = case.content_type
    if case.accept is not None:
        params["Accept"] = case.accept
    try:
        response = client.invoke_endpoint(**params)
    except ClientError as error:
        response = error.response
        assert response["Error"]["Code"] == "ModelError", response
        if response["OriginalStatusCode"] == 0:
            return ("no-response",)
        return (response["OriginalStatusCode"], response["OriginalMessage"])
    return (200, response["ContentType"], response["Body"].read())


def _unpack(artifacts: dict[str, bytes], root: Path) -> dict[str, Path]:
    import tarfile

    directories = {}
    for name, body in artifacts.items():
        directory = root / name
        directory.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            archive.extractall(directory, filter="data")
        directories[name] = directory
    return directories
