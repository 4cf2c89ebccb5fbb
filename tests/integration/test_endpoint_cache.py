"""Model cache behaviour over real sockets: single-flight loads, parallel loads, bounded LRU, Disabled caching."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from endpoint.memory import model_bytes
from packed_forest import PackedForest
from testkit.aws import sagemaker_runtime
from testkit.models import OPTIONS_PROGRAM, fit_forest, model_tar_gz, options_file, packed_bytes, write_program
from testkit.servers import metric_value
from tests.integration.endpoint_harness import EndpointWorld, Start, artifact_bucket, invoke_many

pytestmark = pytest.mark.slow

BUCKET = "endpoint-cache-tests"
PREFIX = "p/multi_model_artifacts/"
ENDPOINT = "cache-tests"
CITIES = [f"City{index}_XX.tar.gz" for index in range(5)]
# Two rows: the container's default CSV decoder leaves a single row 1-D, which model.predict refuses.
ROW = "5.0,1.0,2.0,3.0,4.0,6.0\n1.0,2.0,3.0,4.0,5.0,6.0"


@dataclass(frozen=True)
class CacheWorld(EndpointWorld):
    sizes: list[int]  # each of CITIES' loaded model, measured as the store measures it


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CacheWorld]:
    models = [fit_forest(seed=index, n_estimators=20) for index in range(len(CITIES))]
    artifacts = {name: model_tar_gz(model) for name, model in zip(CITIES, models, strict=True)}
    for name in ("slow-a.tar.gz", "slow-b.tar.gz"):
        artifacts[name] = model_tar_gz(models[0], options_file(load_delay=0.8))
    with artifact_bucket(BUCKET, PREFIX, artifacts) as s3_url:
        programs = tmp_path_factory.mktemp("programs")
        write_program(programs, OPTIONS_PROGRAM)
        # The store measures what model_fn returns; measure the same objects the same way here.
        sizes = [model_bytes(PackedForest.from_bytes(packed_bytes(model))) for model in models]
        yield CacheWorld(BUCKET, PREFIX, ENDPOINT, s3_url, programs, sizes)


def test_hundred_concurrent_cold_requests_download_and_load_once(start: Start) -> None:
    # Given a cold endpoint and a model that takes 0.8 s to load
    url, _ = start()
    # When 100 requests for it arrive at once
    responses = asyncio.run(invoke_many(url, ENDPOINT, ["slow-a.tar.gz"] * 100, ROW))
    # Then all succeed, from exactly one download and one load
    assert [response.status_code for response in responses] == [200] * 100
    assert metric_value(url, "endpoint_model_downloads_total") == 1
    assert metric_value(url, "endpoint_model_loads_total") == 1
    assert metric_value(url, "ModelLoadingWaitTime_count") == 100
    assert metric_value(url, "LoadedModelCount") == 1


def test_different_models_load_in_parallel_without_blocking_the_loop(start: Start) -> None:
    url, _ = start()

    async def scenario() -> tuple[float, float, list[httpx.Response]]:
        started = time.perf_counter()
        loads = asyncio.ensure_future(invoke_many(url, ENDPOINT, ["slow-a.tar.gz", "slow-b.tar.gz"], ROW))
        await asyncio.sleep(0.2)  # both loads are now sleeping in model_fn
        async with httpx.AsyncClient(timeout=5) as client:
            ping_started = time.perf_counter()
            assert (await client.get(f"{url}/ping")).status_code == 200
            ping = time.perf_counter() - ping_started
        responses = await loads
        return time.perf_counter() - started, ping, responses

    # When two slow (0.8 s) models are requested together
    elapsed, ping, responses = asyncio.run(scenario())
    # Then they loaded side by side, and /ping answered meanwhile
    assert [response.status_code for response in responses] == [200, 200]
    assert elapsed < 1.5
    assert ping < 0.3


def test_max_models_two_while_cycling_five(start: Start) -> None:
    # Given room for two models
    url, runtime = start(max_models=2)
    client = sagemaker_runtime(url)
    counts = []
    # When five models are invoked round-robin three times
    for _ in range(3):
        for name in CITIES:
            response = client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel=name, ContentType="text/csv", Body=ROW)
            assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
            counts.append(metric_value(url, "LoadedModelCount"))
    # Then at most two were ever loaded, and every switch was an unload + reload
    assert max(counts) == 2
    assert runtime.store.loaded_names == CITIES[-2:]
    assert metric_value(url, "endpoint_model_downloads_total") == len(CITIES)  # the disk cache kept each one
    assert metric_value(url, "endpoint_model_loads_total") == 3 * len(CITIES)
    assert metric_value(url, "ModelUnloadingTime_count") == 13


def test_memory_budget_for_two_models_while_cycling_five(start: Start, world: CacheWorld) -> None:
    # Given a byte budget that fits two measured models but not three
    sizes = world.sizes
    budget = int(max(sizes) * 2.5)
    assert 3 * min(sizes) > budget, "test models must be similar in size"
    url, runtime = start(max_memory_bytes=budget)
    client = sagemaker_runtime(url)
    # When five models are cycled
    for _ in range(2):
        for name in CITIES:
            response = client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel=name, ContentType="text/csv", Body=ROW)
            assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
            # Then the cache never holds more than two, nor more measured bytes than the budget
            assert metric_value(url, "LoadedModelCount") <= 2
            assert metric_value(url, "LoadedModelBytes") <= budget
    assert len(runtime.store.loaded_names) == 2
    loaded = runtime.store.loaded_names
    assert metric_value(url, "LoadedModelBytes") == sum(sizes[CITIES.index(name)] for name in loaded)


def test_model_cache_disabled_loads_per_request(start: Start) -> None:
    # Given ModelCacheSetting=Disabled
    url, runtime = start(model_cache_setting="Disabled")
    client = sagemaker_runtime(url)
    # When one model is invoked three times
    bodies = [
        client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel=CITIES[0], ContentType="text/csv", Body=ROW)[
            "Body"
        ].read()
        for _ in range(3)
    ]
    # Then each request loaded (and unloaded) the model, the artifact was downloaded once, and nothing stays loaded
    assert len(set(bodies)) == 1
    assert metric_value(url, "endpoint_model_loads_total") == 3
    assert metric_value(url, "endpoint_model_downloads_total") == 1
    assert metric_value(url, "ModelCacheHit_sum") == 0
    asyncio.run(_wait_for(lambda: metric_value(url, "endpoint_model_unloads_total") == 3))
    assert metric_value(url, "LoadedModelCount") == 0
    assert runtime.store.loaded_names == []


def test_warm_requests_are_cache_hits(start: Start) -> None:
    url, _ = start()
    client = sagemaker_runtime(url)
    for _ in range(4):
        client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel=CITIES[1], ContentType="text/csv", Body=ROW)
    assert metric_value(url, "ModelCacheHit_count") == 4
    assert metric_value(url, "ModelCacheHit_sum") == 3
    assert metric_value(url, "endpoint_invocations_total", code="OK") == 4
    assert metric_value(url, "endpoint_invocation_latency_seconds_count") == 4


async def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
