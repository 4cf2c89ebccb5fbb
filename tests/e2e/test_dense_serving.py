"""The whole local stack in dense serving: HTTP API → router → local SageMaker side → the dense container.

`make up SERVING=dense`: the template resolved as deployed with the dense container's image, so the
endpoint process is only the SageMaker side (InvokeEndpoint, S3, LoadModel/UnloadModel) and the model
is served by ``python -m container serve``, the image's command, as its child. One city is trained
through the real pipeline (train.py → S3 → model-sync → registry, pre-warm included).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from endpoint.memory import process_tree
from endpoint.sagemaker_side import model_name
from local.stack import LocalStack
from tests.e2e.stack_harness import DENSE_CITIES, houses, invoke_pickle_under_the_model_prefix, reference_predictions

pytestmark = pytest.mark.slow

CITY = DENSE_CITIES[0]


def price(stack: LocalStack, batch: list[dict]) -> httpx.Response:
    return httpx.post(f"{stack.info.api_url}/locations/{CITY}/predictions", json={"houses": batch}, timeout=30)


def container_processes(stack: LocalStack) -> list[int]:
    """The endpoint's descendants running the image's command."""
    found = []
    for pid in process_tree(stack.child("endpoint").pid)[1:]:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command[1:4] == [b"-m", b"container", b"serve"]:
            found.append(pid)
    return found


def test_the_endpoint_is_the_sagemaker_side_in_front_of_the_containers_own_process(dense_stack: LocalStack) -> None:
    # Given the stack started in dense serving
    assert dense_stack.info.serving == "dense"
    # Then the endpoint runs the image's command as its child, and answers /ping because the container does
    assert container_processes(dense_stack)
    assert httpx.get(f"{dense_stack.info.endpoint_url}/ping", timeout=10).status_code == 200


def test_a_house_is_priced_through_the_router_the_sagemaker_side_and_the_container(
    dense_stack: LocalStack, dense_trained: dict, tmp_path: Path
) -> None:
    # Given the city model-sync promoted (and pre-warmed through the SageMaker side)
    live = dense_trained["live"][CITY]
    batch = houses(CITY, 4, seed=21)
    # When houses are priced through the HTTP API
    response = price(dense_stack, batch)
    # Then the answer is exactly what inference.py computes on the published artifact
    assert response.status_code == 200, response.text
    assert response.json()["model"]["version"] == live.version
    prices = [item["price"] for item in response.json()["predictions"]]
    assert prices == pytest.approx(reference_predictions(dense_stack, CITY, live.version, batch, tmp_path), rel=1e-12)
    # And the container holds the model under SageMaker's opaque name
    container = _container_url(dense_stack)
    names = [model["modelName"] for model in httpx.get(f"{container}/models", timeout=10).json()["models"]]
    assert model_name(live.target_model) in names


def test_a_pickle_under_the_model_prefix_never_runs_in_the_container(dense_stack: LocalStack, tmp_path: Path) -> None:
    # Given a pickle-only artifact written straight under the endpoint's model prefix
    # When it is invoked by TargetModel
    marker = tmp_path / "marker"
    error = invoke_pickle_under_the_model_prefix(dense_stack, marker)
    # Then the container's answer (a 500 naming the remedy) comes back as SageMaker's ModelError; nothing ran
    assert error.response["OriginalStatusCode"] == 500
    assert "python -m training.convert" in error.response["OriginalMessage"]
    assert not marker.exists()


def test_a_dead_container_is_restarted_and_the_next_request_is_answered(
    dense_stack: LocalStack, dense_trained: dict
) -> None:
    batch = houses(CITY, 1, seed=5)
    before = price(dense_stack, batch)
    assert before.status_code == 200
    # When the container dies (every process of it)
    doomed = container_processes(dense_stack)
    for pid in doomed:
        os.kill(pid, signal.SIGKILL)
    # Then the next request through the API is answered, by a new container that loaded the model again
    after = price(dense_stack, batch)
    assert after.status_code == 200, after.text
    assert [item["price"] for item in after.json()["predictions"]] == [
        item["price"] for item in before.json()["predictions"]
    ]
    deadline = time.monotonic() + 10
    while set(container_processes(dense_stack)) & set(doomed) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert container_processes(dense_stack)
    assert not set(container_processes(dense_stack)) & set(doomed)


def _container_url(stack: LocalStack) -> str:
    """The container's address, from its process's startup line in the endpoint's log."""
    import re

    text = Path(stack.info.log_dir, "endpoint.log").read_text()
    urls = re.findall(r"container listening on (http://127\.0\.0\.1:\d+)", text)
    assert urls, text[-2000:]
    return urls[-1]
