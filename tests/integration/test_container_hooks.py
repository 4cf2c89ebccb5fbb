"""A model's own ``code/inference.py``, when the operator allows it (``ALLOW_MODEL_CODE=true``).

Its hooks replace the container's program for that model only; a hook taking a context sees the
request's custom attributes and can set the response's; programs are imported once per content; one
that cannot be imported is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.container_harness import NEW_HOUSE, ContainerProcess, ModelFarm, invoke, load, running_container, tiny_forest

pytestmark = pytest.mark.slow

# Counts its imports in IMPORT_LOG; predicts a constant; echoes the custom attributes through the context.
OWN_PROGRAM = """
import json
import os

with open(os.environ["IMPORT_LOG"], "a") as log:
    log.write("imported\\n")


def model_fn(model_dir):
    return {"answer": 42}


def input_fn(body, content_type):
    return body


def predict_fn(data, model):
    return model["answer"]


def output_fn(prediction, accept, context):
    context.response_custom_attributes = f"echo={context.custom_attributes}"
    return json.dumps({"answer": prediction}), "application/vnd.answer+json"
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModelFarm, ContainerProcess, Path]]:
    base = tmp_path_factory.mktemp("hooks")
    farm = ModelFarm(base / "models")
    imports = base / "imports.log"
    env = {"ALLOW_MODEL_CODE": "true", "IMPORT_LOG": str(imports)}
    with running_container(farm.root, workers=1, env=env) as container:
        yield farm, container, imports


@pytest.fixture
def client(world: tuple[ModelFarm, ContainerProcess, Path]) -> Iterator[httpx.Client]:
    with world[1].client as client:
        yield client


def test_a_model_s_own_hooks_serve_it_and_a_context_hook_sets_the_custom_attributes(
    world: tuple[ModelFarm, ContainerProcess, Path], client: httpx.Client
) -> None:
    farm = world[0]
    url = farm.add("own", None, files={"code/inference.py": OWN_PROGRAM.encode()})

    assert load(client, "own", url).status_code == 200
    response = invoke(client, "own", "anything", **{"X-Amzn-SageMaker-Custom-Attributes": "trace=7"})

    assert response.status_code == 200, response.text
    assert response.json() == {"answer": 42}
    assert response.headers["content-type"] == "application/vnd.answer+json"
    assert response.headers["x-amzn-sagemaker-custom-attributes"] == "echo=trace=7"


def test_models_sharing_one_program_import_it_once_and_others_keep_the_default(
    world: tuple[ModelFarm, ContainerProcess, Path], client: httpx.Client
) -> None:
    farm, _, imports = world
    before = imports.read_text().count("imported") if imports.exists() else 0
    for index in range(3):
        url = farm.add(f"shared-{index}", None, files={"code/inference.py": OWN_PROGRAM.encode() + b"\n# same\n"})
        assert load(client, f"shared-{index}", url).status_code == 200
    assert load(client, "plain", farm.add("plain", tiny_forest())).status_code == 200

    assert imports.read_text().count("imported") - before == 1
    assert [invoke(client, f"shared-{index}").json() for index in range(3)] == [{"answer": 42}] * 3
    assert invoke(client, "plain", NEW_HOUSE).json() == [200.0]


def test_a_program_that_cannot_be_imported_is_refused_with_the_reason(
    world: tuple[ModelFarm, ContainerProcess, Path], client: httpx.Client
) -> None:
    url = world[0].add("broken-code", None, files={"code/inference.py": b"def model_fn(:\n"})

    response = load(client, "broken-code", url)

    assert response.status_code == 400
    assert response.json()["type"] == "InvalidModelException"
    assert "cannot be imported" in response.json()["message"]
