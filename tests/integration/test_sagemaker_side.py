"""Dense serving over real sockets: the local SageMaker side in front of the dense container's real process.

Each test starts the endpoint in dense serving (``create_app``, in a thread) on a moto bucket; it starts
``python -m container serve`` itself, as SageMaker starts the image. Models are one-tree forests (a house
built after 1990 is priced 200 + the model's number); the container's program records each ``model_fn``
call in ``LOAD_LOG``, honours ``options.json`` (slow or failing loads, slow predictions) and echoes the
request headers it saw as custom attributes, so a test can see what crossed the hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from endpoint.app import DenseRuntime, create_app
from endpoint.config import EndpointConfig, ModelDataUrl
from endpoint.sagemaker_side import INVOCATION_TIMEOUT_MESSAGE, model_name
from testkit.aws import sagemaker_runtime
from testkit.models import options_file, tar_gz, write_program
from testkit.servers import metric_value, serve_in_thread
from tests.container_harness import NEW_HOUSE, RECORDING_PROGRAM, recorded_loads, tiny_forest
from tests.integration.endpoint_harness import artifact_bucket, invocation_error, invoke_many

BUCKET = "dense-side"
PREFIX = "mme/"
ENDPOINT = "dense-local"
MODELS = 4
# The container harness's recording program (LOAD_LOG, options.json), echoing what crossed the hop.
PROGRAM = (
    RECORDING_PROGRAM
    + """

def output_fn(prediction, accept, context):
    seen = [context.target_model, context.custom_attributes, context.inference_id, accept]
    context.response_custom_attributes = "seen=" + "|".join(str(value) for value in seen)
    return json.dumps([float(value) for value in prediction]), "application/json"
"""
)


def target(index: int) -> str:
    return f"City{index}.20261207T000000Z-0000000{index}.tar.gz"


def price(index: int) -> float:
    return 200.0 + index


ARTIFACTS = {
    **{target(index): tar_gz({"forest.npz": tiny_forest(100.0, price(index))}) for index in range(MODELS)},
    "slow.tar.gz": tar_gz({"forest.npz": tiny_forest(), **options_file(load_delay=0.4)}),
    "fails.tar.gz": tar_gz({"forest.npz": tiny_forest(), **options_file(fail="model_fn refused this model")}),
    "sleepy.tar.gz": tar_gz({"forest.npz": tiny_forest(), **options_file(predict_delay=3)}),
}


@dataclass(frozen=True)
class World:
    s3_url: str
    programs: Path


@dataclass
class Side:
    """A running endpoint in dense serving: its URL, its parts, and its container's URL."""

    url: str
    runtime: DenseRuntime
    load_log: Path

    @property
    def container_url(self) -> str:
        return f"http://{self.runtime.client.host}:{self.runtime.client.port}"

    def container_models(self) -> list[str]:
        answer = httpx.get(f"{self.container_url}/models", timeout=10)
        assert answer.status_code == 200, answer.text
        return sorted(model["modelName"] for model in answer.json()["models"])

    def loads(self) -> int:
        return len(recorded_loads(self.load_log))

    def invoke(self, index_or_target: int | str, **kwargs: Any) -> dict[str, Any]:
        name = target(index_or_target) if isinstance(index_or_target, int) else index_or_target
        client = sagemaker_runtime(self.url)
        response: dict[str, Any] = client.invoke_endpoint(
            EndpointName=ENDPOINT, TargetModel=name, ContentType="text/csv", Body=NEW_HOUSE, **kwargs
        )
        response["Prices"] = json.loads(response["Body"].read())
        return response


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    programs = tmp_path_factory.mktemp("programs")
    write_program(programs, PROGRAM)
    with artifact_bucket(BUCKET, PREFIX, ARTIFACTS) as s3_url:
        yield World(s3_url, programs)


@pytest.fixture
def start(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Side]]:
    """``start(**config)``: the endpoint in dense serving with its container; stopped (container too) at the end."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", world.s3_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    counter = itertools.count()
    with contextlib.ExitStack() as running:

        def start(*, container_budget: int | None = None, **overrides: Any) -> Side:
            number = next(counter)
            load_log = tmp_path / f"loads-{number}.log"
            environ = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("CONTAINER_", "SAGEMAKER_", "ALLOW_"))},
                "SAGEMAKER_SUBMIT_DIRECTORY": str(world.programs),
                "LOAD_LOG": str(load_log),
            }
            if container_budget is not None:
                environ["CONTAINER_MEMORY_BUDGET_BYTES"] = str(container_budget)
            overrides.setdefault("container_workers", 1)
            overrides.setdefault("cache_dir", tmp_path / f"cache-{number}")
            config = EndpointConfig(
                model_data_url=ModelDataUrl.parse(f"s3://{BUCKET}/{PREFIX}"),
                endpoint_name=ENDPOINT,
                serving="dense",
                **overrides,
            )
            app = create_app(config, environ=environ)
            url = running.enter_context(serve_in_thread(app))
            return Side(url, app.state.runtime, load_log)

        yield start


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_first_invocation_downloads_extracts_and_loads_the_model_into_the_container(
    start: Callable[..., Side],
) -> None:
    side = start()
    # When a TargetModel is invoked for the first time, then again
    first = side.invoke(0)
    second = side.invoke(0)
    # Then the container's model answers both times
    assert first["Prices"] == second["Prices"] == [price(0)]
    assert first["ContentType"] == "application/json"
    # And the container has it under an opaque name, in SageMaker's layout, extracted from the artifact
    name = model_name(target(0))
    assert side.container_models() == [name]
    listed = httpx.get(f"{side.container_url}/models/{name}", timeout=10).json()
    assert listed["modelUrl"] == str(side.runtime.cache_dir / "models" / name / "model")
    assert (Path(listed["modelUrl"]) / "forest.npz").is_file()
    # And it was loaded once: the second request was a cache hit
    assert side.loads() == 1
    assert metric_value(side.url, "ModelCacheHit_count") == 2
    assert metric_value(side.url, "ModelCacheHit_sum") == 1


def test_the_request_headers_reach_the_container_and_its_custom_attributes_come_back(
    start: Callable[..., Side],
) -> None:
    side = start()
    # When invoked with custom attributes, an inference id and an Accept
    response = side.invoke(1, CustomAttributes="trace=abc", InferenceId="inference-7", Accept="application/json")
    # Then the container saw each of them, and SageMaker passes back the attributes it set
    assert response["CustomAttributes"] == f"seen={target(1)}|trace=abc|inference-7|application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"


def test_concurrent_first_requests_share_one_download_and_one_load(start: Callable[..., Side]) -> None:
    side = start()
    # Given a model whose model_fn takes 0.4 s, when 20 requests for it arrive at once
    responses = asyncio.run(invoke_many(side.url, ENDPOINT, ["slow.tar.gz"] * 20, NEW_HOUSE))
    # Then every one is answered, from one download and one LoadModel
    assert [response.status_code for response in responses] == [200] * 20
    assert side.loads() == 1
    assert metric_value(side.url, "endpoint_model_downloads_total") == 1
    assert metric_value(side.url, "endpoint_model_loads_total") == 1


def test_a_full_container_unloads_the_least_recently_used_model_and_retries(start: Callable[..., Side]) -> None:
    # Given a container whose budget holds two of these models, and a disk cache too small to keep any unpinned
    side = start(container_budget=80_000, max_disk_bytes=1)
    side.invoke(0)
    side.invoke(1)
    side.invoke(0)  # model 1 is now the least recently used
    directories = {index: side.runtime.cache_dir / "models" / model_name(target(index)) for index in range(3)}
    # Then while loaded, their directories stay on disk however small the cache
    assert directories[0].is_dir()
    assert directories[1].is_dir()
    # When a third model is invoked (the container answers LoadModel with 507)
    assert side.invoke(2)["Prices"] == [price(2)]
    # Then model 1 was unloaded to make room, and the load retried
    assert side.container_models() == sorted(model_name(target(index)) for index in (0, 2))
    assert side.runtime.models.loaded_targets == [target(0), target(2)]
    assert metric_value(side.url, "endpoint_model_unloads_total") == 1
    # And only the unloaded model's directory left the disk cache
    assert eventually(lambda: not directories[1].exists())
    assert directories[0].is_dir()
    assert directories[2].is_dir()
    # And model 1 comes back when asked for
    assert side.invoke(1)["Prices"] == [price(1)]


def test_concurrent_requests_for_more_models_than_fit_are_all_answered(start: Callable[..., Side]) -> None:
    # Given a container whose budget holds two models, and 32 requests at once spread over four cold models
    side = start(container_budget=80_000)
    targets = [target(index % MODELS) for index in range(32)]
    # When they all arrive together (loads race each other for the memory, 507s included)
    responses = asyncio.run(invoke_many(side.url, ENDPOINT, targets, NEW_HOUSE))
    # Then every one is answered by its own model
    assert [response.status_code for response in responses] == [200] * 32, [r.text for r in responses][:3]
    assert [response.json() for response in responses] == [[price(index % MODELS)] for index in range(32)]
    # And the container never holds more than fits: models were unloaded to make room for the others
    assert len(side.container_models()) <= 2
    assert metric_value(side.url, "endpoint_model_unloads_total") >= 2


def test_a_model_the_container_lost_is_loaded_again_and_the_invocation_retried(start: Callable[..., Side]) -> None:
    side = start()
    side.invoke(0)
    # Given the container unloaded the model behind the SageMaker side's back
    deleted = httpx.delete(f"{side.container_url}/models/{model_name(target(0))}", timeout=10)
    assert deleted.status_code == 200
    # When it is invoked (the container answers 404)
    response = side.invoke(0)
    # Then the SageMaker side loaded it again and the caller never saw the 404
    assert response["Prices"] == [price(0)]
    assert side.loads() == 2
    assert side.container_models() == [model_name(target(0))]


def test_a_restarted_container_gets_its_models_loaded_again(start: Callable[..., Side]) -> None:
    # Given a container with two workers that has a model loaded
    side = start(container_workers=2)
    side.invoke(0)
    before = side.runtime.instance.pid
    assert before is not None
    # When the container dies (all its processes, as when a container's main process exits)
    for pid in side.runtime.instance.pids():
        os.kill(pid, signal.SIGKILL)
    # Then the next invocation is answered, by a new container that loaded the model again
    assert side.invoke(0)["Prices"] == [price(0)]
    assert side.runtime.instance.pid != before
    assert side.runtime.instance.generation == 1
    assert side.container_models() == [model_name(target(0))]
    assert metric_value(side.url, "endpoint_model_loads_total") == 2


def test_a_failing_load_is_a_model_error_with_the_containers_status_and_body(start: Callable[..., Side]) -> None:
    side = start()
    client = sagemaker_runtime(side.url)
    # When model_fn raises while the container loads the model
    error = invocation_error(client, "ModelError", ENDPOINT, "fails.tar.gz", NEW_HOUSE)
    # Then the caller gets SageMaker's ModelError carrying the container's answer to LoadModel
    assert error["OriginalStatusCode"] == 500
    assert "model_fn refused this model" in error["OriginalMessage"]
    assert "Received server error (500) from primary" in error["Error"]["Message"]
    # And nothing stays loaded
    assert side.container_models() == []
    assert side.runtime.models.loaded_targets == []


def test_a_non_2xx_invocation_is_a_model_error_with_exactly_the_containers_answer(start: Callable[..., Side]) -> None:
    side = start()
    side.invoke(0)
    name = model_name(target(0))
    body = "not,a,house"
    # Given what the container itself answers to a body its hooks cannot read
    direct = httpx.post(
        f"{side.container_url}/models/{name}/invoke", content=body, headers={"content-type": "text/csv"}, timeout=10
    )
    assert direct.status_code >= 400
    # When the same request comes through InvokeEndpoint
    error = invocation_error(sagemaker_runtime(side.url), "ModelError", ENDPOINT, target(0), body)
    # Then OriginalStatusCode and OriginalMessage are that status and body, untouched
    assert error["OriginalStatusCode"] == direct.status_code
    assert error["OriginalMessage"] == direct.text
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424


def test_an_invocation_the_container_does_not_answer_in_time_is_sagemakers_timeout(
    start: Callable[..., Side],
) -> None:
    side = start(container_invoke_timeout_seconds=0.5)
    # When the model takes longer to predict than the invocation timeout
    error = invocation_error(sagemaker_runtime(side.url), "ModelError", ENDPOINT, "sleepy.tar.gz", NEW_HOUSE)
    # Then the caller gets SageMaker's timeout error
    assert error["OriginalStatusCode"] == 0
    assert error["OriginalMessage"] == INVOCATION_TIMEOUT_MESSAGE


def test_with_the_cache_disabled_each_invocation_loads_invokes_and_unloads(start: Callable[..., Side]) -> None:
    side = start(model_cache_setting="Disabled")
    # When a model is invoked twice, one after the other
    assert side.invoke(0)["Prices"] == [price(0)]
    assert eventually(lambda: side.container_models() == [])
    assert side.invoke(0)["Prices"] == [price(0)]
    # Then each invocation loaded it and unloaded it afterwards
    assert eventually(lambda: side.container_models() == [])
    assert side.loads() == 2
    assert side.runtime.models.loaded_targets == []
    assert eventually(lambda: metric_value(side.url, "endpoint_model_unloads_total") == 2)


def test_a_missing_artifact_is_sagemakers_download_error(start: Callable[..., Side]) -> None:
    side = start()
    error = invocation_error(sagemaker_runtime(side.url), "ValidationError", ENDPOINT, "Nowhere.tar.gz", NEW_HOUSE)
    assert error["Error"]["Message"].startswith(f"Failed to download model data (bucket: {BUCKET}, key: {PREFIX}")
    assert side.container_models() == []


def test_the_instance_memory_is_the_containers_pss_and_over_it_models_are_unloaded(start: Callable[..., Side]) -> None:
    side = start()
    for index in range(3):
        side.invoke(index)
    # Then the SageMaker side reports the container's memory (its process tree's PSS)
    assert eventually(lambda: metric_value(side.url, "ContainerMemoryBytes") > 10 * 1024**2)
    assert 0 < metric_value(side.url, "MemoryUtilization") < 100
    # When the instance's memory is smaller than what the container takes
    side.runtime.models.instance_memory_bytes = 1
    # Then the models no request is using are unloaded, least recently used first
    assert eventually(lambda: side.container_models() == [])
    assert side.runtime.models.loaded_targets == []


def test_ping_answers_as_the_container_does(start: Callable[..., Side]) -> None:
    side = start()
    assert httpx.get(f"{side.url}/ping", timeout=10).status_code == 200
    # When the container stops answering (frozen: its process lives, so it is not restarted)
    pid = side.runtime.instance.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        # Then the endpoint is unhealthy while the container does not answer
        assert httpx.get(f"{side.url}/ping", timeout=10).status_code == 503
    finally:
        os.kill(pid, signal.SIGCONT)
    assert eventually(lambda: httpx.get(f"{side.url}/ping", timeout=10).status_code == 200)


def test_a_relative_cache_directory_reaches_the_container_as_absolute_paths(
    start: Callable[..., Side], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the endpoint started with a cache directory relative to its working directory
    monkeypatch.chdir(tmp_path)
    side = start(cache_dir=Path("relative-cache"))
    # Then the container (which runs elsewhere and takes absolute model paths only) serves from it
    assert side.invoke(0)["Prices"] == [price(0)]
    assert (tmp_path / "relative-cache" / "models" / model_name(target(0)) / "model" / "forest.npz").is_file()
