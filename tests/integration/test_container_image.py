"""The image without Docker: its file layout, environment and command, run from a venv of its pinned requirements.

Base images cannot be pulled here, so the Dockerfile is read instead: its ``COPY`` lines lay the files
out under a temporary ``/opt``, its ``ENV`` becomes the process environment (nothing of the repository
on ``sys.path``), and its ``ENTRYPOINT`` + ``CMD`` run with the Python of ``build/container-venv``
(Python 3.12, ``pip install --no-deps -r requirements/container.txt``, as the image installs it).
SageMaker's calls then load a model from ``/opt/ml/models/{name}/model`` and invoke it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testkit.servers import startup_url
from tests.container_harness import OLD_HOUSE, stop, tiny_forest
from tests.sagemaker_image import cached_venv

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "container" / "Dockerfile"
REQUIREMENTS = ROOT / "requirements" / "container.txt"
VENV = ROOT / "build" / "container-venv"
IMAGE_PYTHON = "3.12"


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages = re.split(r"(?m)^FROM ", text)
    lines = [line.strip() for line in stages[-1].splitlines()[1:]]
    return [tuple(line.split(" ", 1)) for line in lines if line and not line.startswith("#")]  # type: ignore[misc]


def lay_out(opt: Path) -> None:
    """What the final stage's COPY lines put in the image, under ``opt`` instead of /opt."""
    for instruction, arguments in instructions():
        if instruction != "COPY" or arguments.startswith("--from"):
            continue
        *sources, destination = shlex.split(arguments)
        target = opt / Path(destination).relative_to("/opt")
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                into = target / path.name if destination.endswith("/") else target
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into)


def image_environment(opt: Path, venv_bin: Path) -> dict[str, str]:
    environment = {"PATH": f"{venv_bin}:/usr/bin:/bin", "HOME": str(opt)}
    for instruction, arguments in instructions():
        if instruction == "ENV":
            for assignment in shlex.split(arguments):
                name, value = assignment.split("=", 1)
                if name != "PATH":
                    environment[name] = value.replace("/opt/", f"{opt}/")
    return environment


def test_the_dockerfile_declares_what_sagemaker_requires() -> None:
    found = instructions()
    labels = " ".join(arguments for instruction, arguments in found if instruction == "LABEL")
    entrypoint = [json.loads(arguments) for instruction, arguments in found if instruction == "ENTRYPOINT"]
    command = [json.loads(arguments) for instruction, arguments in found if instruction == "CMD"]
    users = [arguments for instruction, arguments in found if instruction == "USER"]

    assert "com.amazonaws.sagemaker.capabilities.multi-models=true" in labels
    assert entrypoint == [["python", "-m", "container"]]
    assert command == [["serve"]]
    assert users == ["model-server"]
    assert re.search(
        r"(?m)^ARG PYTHON_IMAGE=python:3\.12[\w.-]*-slim-bookworm@sha256:[0-9a-f]{64}$", DOCKERFILE.read_text()
    )


@pytest.fixture(scope="module")
def image_python() -> Path:
    python = cached_venv(VENV, IMAGE_PYTHON, ["--no-deps", "-r", str(REQUIREMENTS)], REQUIREMENTS.read_bytes())
    if python is None:
        pytest.skip(f"Python {IMAGE_PYTHON} (the image's) is not installed")
    return python


@pytest.fixture
def image(tmp_path: Path, image_python: Path) -> Iterator[tuple[str, Path]]:
    """The image's command running on its layout; yields (url, models root)."""
    opt = tmp_path / "opt"
    lay_out(opt)
    models = opt / "ml" / "models"
    models.mkdir(parents=True)
    environment = image_environment(opt, image_python.parent)
    environment.update({"CONTAINER_MEMORY_BYTES": str(1 << 30), "CONTAINER_PORT": "0", "CONTAINER_HOST": "127.0.0.1"})
    entrypoint = next(json.loads(arguments) for instruction, arguments in instructions() if instruction == "ENTRYPOINT")
    command = next(json.loads(arguments) for instruction, arguments in instructions() if instruction == "CMD")
    workdir = next(arguments for instruction, arguments in instructions() if instruction == "WORKDIR")
    argv = [str(image_python) if entrypoint[0] == "python" else entrypoint[0], *entrypoint[1:], *command]
    process = subprocess.Popen(
        argv,
        cwd=str(opt / Path(workdir).relative_to("/opt")),
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield startup_url(process, timeout=60), models
    finally:
        stop(process)


def test_the_image_s_command_serves_a_model_sagemaker_extracted(image: tuple[str, Path]) -> None:
    url, models = image
    # Given a model where SageMaker extracts it: /opt/ml/models/{model_name}/model
    # An opaque name, as SageMaker's are.
    name = hashlib.md5(b"Chicago_IL.tar.gz").hexdigest()
    model = models / name / "model"
    model.mkdir(parents=True)
    (model / "forest.npz").write_bytes(tiny_forest(low=321.0, high=654.0))

    with httpx.Client(base_url=url, timeout=30) as client:
        # When SageMaker pings, loads and invokes it
        ping = client.get("/ping")
        loaded = client.post("/models", json={"model_name": name, "url": str(model)})
        answer = client.post(f"/models/{name}/invoke", content=OLD_HOUSE, headers={"content-type": "text/csv"})

    # Then the image's own files and packages serve it
    assert ping.status_code == 200
    assert loaded.status_code == 200, loaded.text
    assert (answer.status_code, answer.json()) == (200, [321.0])


def test_the_image_holds_its_own_copies_and_no_aws_sdk(image_python: Path, tmp_path: Path) -> None:
    opt = tmp_path / "opt"
    lay_out(opt)
    environment = image_environment(opt, image_python.parent)
    probe = (
        "import json, sys, container.app, packed_forest, house_prices.schema\n"
        "try:\n    import boto3\n    sdk = True\nexcept ImportError:\n    sdk = False\n"
        "files = [container.app.__file__, packed_forest.__file__, house_prices.schema.__file__]\n"
        "print(json.dumps([*files, sys.path, sdk]))"
    )

    result = subprocess.run(
        [str(image_python), "-c", probe], cwd=opt, env=environment, capture_output=True, text=True, check=True
    )

    *files, path, sdk = json.loads(result.stdout)
    assert all(file.startswith(str(opt)) for file in files), files
    assert not any(entry.startswith(os.fspath(ROOT)) and not entry.startswith(str(VENV)) for entry in path), path
    assert sdk is False
