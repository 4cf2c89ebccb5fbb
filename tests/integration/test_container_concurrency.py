"""Races the contract leaves to the container, over real sockets with 2 workers and a recording program.

Concurrent loads of one model run ``model_fn`` once (the rest get 409); loads and unloads while
invocations run never break them; a model loaded through one worker is mapped lazily by the other;
a failed load is reported to every concurrent caller and leaves the name free; the budget refuses
a model with 507 until another is unloaded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from container.sizing import PER_WORKER_OVERHEAD_BYTES
from testkit.models import options_file
from tests.container_harness import (
    NEW_HOUSE,
    OLD_HOUSE,
    RECORDING_PROGRAM,
    ContainerProcess,
    ModelFarm,
    fresh_connection_invoke,
    invoke,
    load,
    recorded_loads,
    running_container,
    tiny_forest,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModelFarm, ContainerProcess, Path]]:
    base = tmp_path_factory.mktemp("concurrency")
    farm = ModelFarm(base / "models")
    program = base / "program"
    program.mkdir()
    (program / "inference.py").write_text(RECORDING_PROGRAM)
    log = base / "loads.log"
    env = {"SAGEMAKER_SUBMIT_DIRECTORY": str(program), "SAGEMAKER_PROGRAM": "inference.py", "LOAD_LOG": str(log)}
    with running_container(farm.root, workers=2, env=env) as container:
        yield farm, container, log


@pytest.fixture
def farm(world: tuple[ModelFarm, ContainerProcess, Path]) -> ModelFarm:
    return world[0]


@pytest.fixture
def container(world: tuple[ModelFarm, ContainerProcess, Path]) -> ContainerProcess:
    return world[1]


@pytest.fixture
def loads(world: tuple[ModelFarm, ContainerProcess, Path]) -> Path:
    return world[2]


def test_concurrent_loads_of_one_model_run_one_load_and_the_others_get_409(
    container: ContainerProcess, farm: ModelFarm, loads: Path
) -> None:
    # Given a model whose model_fn takes a while, and 16 callers asking for it at once on their own connections
    url = farm.add("contended", tiny_forest(), files=options_file(load_delay=0.4))
    barrier = threading.Barrier(16)

    def post() -> int:
        with httpx.Client(base_url=container.url, timeout=30) as client:
            barrier.wait()
            return load(client, "contended", url).status_code

    # When they all load it
    with ThreadPoolExecutor(16) as pool:
        statuses = sorted(pool.map(lambda _: post(), range(16)))

    # Then exactly one load ran and succeeded; every other caller waited for it and got 409
    assert statuses == [200] + [409] * 15
    assert [directory for _, directory in recorded_loads(loads)].count(url) == 1


def test_a_failed_load_is_every_concurrent_caller_s_answer_and_leaves_the_name_free(
    container: ContainerProcess, farm: ModelFarm
) -> None:
    url = farm.add("broken", tiny_forest(), files=options_file(load_delay=0.3, fail="no such weights"))
    barrier = threading.Barrier(4)

    def post() -> httpx.Response:
        with httpx.Client(base_url=container.url, timeout=30) as client:
            barrier.wait()
            return load(client, "broken", url)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(), range(4)))

    assert {answer.status_code for answer in answers} == {500}
    assert {answer.json()["type"] for answer in answers} == {"ModelLoadException"}
    assert all("no such weights" in answer.json()["message"] for answer in answers)
    with container.client as client:
        assert client.get("/models/broken").status_code == 404


def test_a_model_loaded_through_one_worker_is_mapped_lazily_by_the_other(
    container: ContainerProcess, farm: ModelFarm, loads: Path
) -> None:
    # Given a model loaded through one worker
    url = farm.add("lazy", tiny_forest(low=7.0, high=8.0))
    with container.client as client:
        assert load(client, "lazy", url).status_code == 200
    loaders = {pid for pid, directory in recorded_loads(loads) if directory == url}

    # When new connections (spread over both workers' sockets) invoke it
    answers = [fresh_connection_invoke(container.url, "lazy", OLD_HOUSE) for _ in range(16)]

    # Then every worker answers, the one that did not load it having run model_fn itself once
    assert {(answer.status_code, answer.text) for answer in answers} == {(200, "[7.0]")}
    mapped = [pid for pid, directory in recorded_loads(loads) if directory == url]
    assert len(loaders) == 1
    assert len(set(mapped)) == 2, "both workers should have served it"
    assert len(mapped) == 2, "each worker runs model_fn once per load"


def test_unload_during_an_invocation_lets_it_finish(container: ContainerProcess, farm: ModelFarm) -> None:
    # Given a model whose predictions take 0.5 s, and an invocation in flight
    url = farm.add("slow", tiny_forest(low=1.0, high=2.0), files=options_file(predict_delay=0.5))
    with container.client as client:
        assert load(client, "slow", url).status_code == 200
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(fresh_connection_invoke, container.url, "slow", NEW_HOUSE)
        time.sleep(0.15)

        # When the model is unloaded meanwhile
        with container.client as client:
            unloaded = client.delete("/models/slow")
            after = invoke(client, "slow")

        # Then the unload answers at once, the invocation in flight still gets its prediction, and later ones 404
        assert unloaded.status_code == 200
        assert not in_flight.done()
        answer = in_flight.result(timeout=10)
    assert (answer.status_code, answer.text) == (200, "[2.0]")
    assert after.status_code == 404


def test_loads_and_unloads_during_invocations_break_none_of_them(container: ContainerProcess, farm: ModelFarm) -> None:
    # Given a model being invoked continuously on 4 connections
    url = farm.add("busy", tiny_forest(low=3.0, high=4.0))
    with container.client as client:
        assert load(client, "busy", url).status_code == 200
    stop = threading.Event()
    answers: list[tuple[int, str]] = []

    def keep_invoking() -> None:
        with httpx.Client(base_url=container.url, timeout=30) as client:
            while not stop.is_set():
                response = invoke(client, "busy", OLD_HOUSE)
                answers.append((response.status_code, response.text))

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(keep_invoking)

        # When 20 other models are loaded and unloaded meanwhile
        with container.client as client:
            for index in range(20):
                other = farm.add(f"churn-{index}", tiny_forest())
                assert load(client, f"churn-{index}", other).status_code == 200
                assert invoke(client, f"churn-{index}", NEW_HOUSE).status_code == 200
                assert client.delete(f"/models/churn-{index}").status_code == 200
        stop.set()

    # Then every invocation of the busy model succeeded
    assert answers
    assert set(answers) == {(200, "[3.0]")}


def test_a_load_waits_for_nothing_but_its_own_model_fn(container: ContainerProcess, farm: ModelFarm) -> None:
    # Given a load that takes 1 s in progress
    slow = farm.add("slow-load", tiny_forest(), files=options_file(load_delay=1.0))
    quick = farm.add("quick-load", tiny_forest())

    def load_slow() -> httpx.Response:
        with httpx.Client(base_url=container.url, timeout=30) as client:
            return load(client, "slow-load", slow)

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(load_slow)
        time.sleep(0.1)

        # When another model is loaded and invoked meanwhile
        started = time.monotonic()
        with container.client as client:
            quick_answer = load(client, "quick-load", quick)
            invoked = invoke(client, "quick-load")
        elapsed = time.monotonic() - started

        # Then it does not wait for the slow one
        assert pending.result(timeout=10).status_code == 200
    assert quick_answer.status_code == 200
    assert invoked.status_code == 200
    assert elapsed < 0.8


def test_the_budget_refuses_a_model_with_507_until_another_is_unloaded(tmp_path: Path) -> None:
    # Given a container whose budget takes two tiny models (each is charged ~1 KiB + the per-worker overhead)
    farm = ModelFarm(tmp_path / "models")
    urls = [farm.add(f"m{index}", tiny_forest()) for index in range(3)]
    budget = 2 * (PER_WORKER_OVERHEAD_BYTES + 2048)
    with running_container(farm.root, workers=1, budget_bytes=budget) as container, container.client as client:
        assert load(client, "m0", urls[0]).status_code == 200
        assert load(client, "m1", urls[1]).status_code == 200

        # When a third is loaded
        refused = load(client, "m2", urls[2])

        # Then it is refused with 507 (SageMaker unloads a model and retries), and fits once one is gone
        assert refused.status_code == 507, refused.text
        assert refused.json()["type"] == "InsufficientMemoryException"
        assert client.get("/models/m2").status_code == 404
        assert client.delete("/models/m0").status_code == 200
        assert load(client, "m2", urls[2]).status_code == 200
        assert invoke(client, "m2", OLD_HOUSE).json() == [100.0]
