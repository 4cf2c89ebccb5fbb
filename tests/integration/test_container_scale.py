"""10,000 models in one container: every load succeeds, the list pages through all of them, each answers.

Tiny forests (one tree), their directories made once per session with hard links to one file, loaded
over 4 connections into 2 workers: what a SageMaker instance does when 10,000 cities are invoked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.container_harness import (
    OLD_HOUSE,
    ContainerProcess,
    ModelFarm,
    invoke,
    load_request,
    pipelined,
    running_container,
    tiny_forest,
)

pytestmark = pytest.mark.slow

MODELS = 10_000


@pytest.fixture(scope="session")
def ten_thousand(tmp_path_factory: pytest.TempPathFactory) -> ModelFarm:
    root = tmp_path_factory.mktemp("ten-thousand")
    source = root / "forest.npz"
    source.write_bytes(tiny_forest(low=5.0, high=6.0))
    farm = ModelFarm(root / "models")
    for index in range(MODELS):
        farm.link(f"city-{index:05d}", source)
    return farm


@pytest.fixture(scope="module")
def container(ten_thousand: ModelFarm) -> Iterator[ContainerProcess]:
    with running_container(ten_thousand.root, workers=2, args=("--log-level", "warning")) as running:
        yield running


def test_ten_thousand_models_load_list_and_answer(container: ContainerProcess, ten_thousand: ModelFarm) -> None:
    names = [f"city-{index:05d}" for index in range(MODELS)]

    # When every model is loaded, over 4 connections (spread over both workers)
    requests = [load_request(name, ten_thousand.url(name)) for name in names]
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        shares = pool.map(lambda share: pipelined(container.url, share), [requests[i::4] for i in range(4)])
        statuses = [status for share in shares for status in share]
    loading_seconds = time.monotonic() - started

    # Then every load succeeded, the list holds each model once in order, and any of them answers
    assert statuses == [200] * MODELS
    listed: list[str] = []
    with container.client as client:
        token = None
        while True:
            page = client.get("/models", params={"next_page_token": token} if token else {}).json()
            listed.extend(model["modelName"] for model in page["models"])
            token = page.get("nextPageToken")
            if token is None:
                break
        answers = {invoke(client, name, OLD_HOUSE).text for name in names[::500]}
        assert client.get(f"/models/{names[-1]}").status_code == 200
    assert listed == names
    assert answers == {"[5.0]"}
    print(f"loaded {MODELS} models in {loading_seconds:.1f} s ({loading_seconds / MODELS * 1000:.2f} ms each)")
