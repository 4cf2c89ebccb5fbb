"""The multi-model contract, as SageMaker drives it: ``python -m container`` over real sockets, 2 workers.

Each documented call and status: ping; load (200, 409 already loaded, 404/400 bad url, 400 bad body);
list with pagination; describe (200, 404); unload (200, 404); invoke (200 with the model's answer and
the output's content type, 404 not loaded, the hook's 500); wrong paths and methods.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.container_harness import (
    NEW_HOUSE,
    OLD_HOUSE,
    ContainerProcess,
    ModelFarm,
    fresh_connection_invoke,
    invoke,
    load,
    running_container,
    tiny_forest,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> ModelFarm:
    farm = ModelFarm(tmp_path_factory.mktemp("models"))
    for index in range(7):
        farm.add(f"city-{index}", tiny_forest(low=100.0 + index, high=200.0 + index))
    return farm


@pytest.fixture(scope="module")
def container(farm: ModelFarm) -> Iterator[ContainerProcess]:
    with running_container(farm.root, workers=2) as running:
        yield running


@pytest.fixture
def client(container: ContainerProcess) -> Iterator[httpx.Client]:
    with container.client as client:
        yield client
        # Each test starts from an empty container: unload whatever it left loaded.
        for model in client.get("/models").json()["models"]:
            client.delete(f"/models/{model['modelName']}")


def test_ping_answers_200_with_an_empty_body(client: httpx.Client) -> None:
    response = client.get("/ping")

    assert response.status_code == 200
    assert response.content == b""


def test_a_loaded_model_answers_its_invocations_with_the_model_s_predictions(
    client: httpx.Client, farm: ModelFarm
) -> None:
    # Given a model loaded by its directory
    loaded = load(client, "city-1", farm.url("city-1"))

    # When it is invoked with one CSV row per house
    response = invoke(client, "city-1", f"{OLD_HOUSE}\n{NEW_HOUSE}")

    # Then the load succeeded and the answer is the forest's prediction, as JSON by default
    assert loaded.status_code == 200, loaded.text
    assert loaded.json() == {"status": 'Model "city-1" loaded'}
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == [101.0, 201.0]


def test_accept_chooses_the_output_encoding_and_the_content_type_follows_it(
    client: httpx.Client, farm: ModelFarm
) -> None:
    load(client, "city-2", farm.url("city-2"))

    as_csv = invoke(client, "city-2", OLD_HOUSE, accept="text/csv")
    as_npy = invoke(client, "city-2", OLD_HOUSE, accept="application/x-npy")
    as_default = invoke(client, "city-2", OLD_HOUSE, accept="*/*")

    assert (as_csv.status_code, as_csv.headers["content-type"], as_csv.text) == (200, "text/csv", "102.0\n")
    assert as_npy.headers["content-type"] == "application/x-npy"
    assert np.load(io.BytesIO(as_npy.content)).tolist() == [102.0]
    assert as_default.headers["content-type"] == "application/json"


def test_sagemaker_headers_are_accepted_and_the_target_model_is_not_the_key(
    client: httpx.Client, farm: ModelFarm
) -> None:
    # Given a model whose name is SageMaker's opaque identifier, not the TargetModel
    load(client, "5f4dcc3b5aa765d61d8327deb882cf99", farm.url("city-3"))

    # When invoked with the headers SageMaker forwards
    response = invoke(
        client,
        "5f4dcc3b5aa765d61d8327deb882cf99",
        NEW_HOUSE,
        **{
            "X-Amzn-SageMaker-Target-Model": "Chicago_IL.20261125T040000Z-1a2b3c4d.tar.gz",
            "X-Amzn-SageMaker-Custom-Attributes": "trace=abc",
            "X-Amzn-SageMaker-Inference-Id": "inference-1",
        },
    )

    # Then the model answers; hooks that set no custom attributes send none back
    assert response.status_code == 200, response.text
    assert response.json() == [203.0]
    assert "x-amzn-sagemaker-custom-attributes" not in response.headers


def test_loading_a_loaded_model_again_is_409_and_changes_nothing(client: httpx.Client, farm: ModelFarm) -> None:
    assert load(client, "city-0", farm.url("city-0")).status_code == 200

    again = load(client, "city-0", farm.url("city-1"))

    assert again.status_code == 409
    assert again.json()["type"] == "ConflictStatusException"
    assert client.get("/models/city-0").json() == {"modelName": "city-0", "modelUrl": farm.url("city-0")}
    assert invoke(client, "city-0", OLD_HOUSE).json() == [100.0]


def test_list_pages_through_every_loaded_model_in_name_order(client: httpx.Client, farm: ModelFarm) -> None:
    # Given seven loaded models
    for index in (3, 0, 6, 1, 5, 2, 4):
        assert load(client, f"city-{index}", farm.url(f"city-{index}")).status_code == 200

    # When listed three at a time, passing nextPageToken back as next_page_token
    pages = []
    token = None
    while True:
        params = {"limit": "3", **({"next_page_token": token} if token else {})}
        page = client.get("/models", params=params).json()
        pages.append([model["modelName"] for model in page["models"]])
        token = page.get("nextPageToken")
        if token is None:
            break

    # Then the pages hold every model once, in name order, and the last page carries no token
    assert pages == [["city-0", "city-1", "city-2"], ["city-3", "city-4", "city-5"], ["city-6"]]
    assert client.get("/models").json()["models"][0] == {"modelName": "city-0", "modelUrl": farm.url("city-0")}


def test_a_page_token_survives_models_loaded_and_unloaded_between_pages(client: httpx.Client, farm: ModelFarm) -> None:
    for index in (1, 2, 4, 5):
        load(client, f"city-{index}", farm.url(f"city-{index}"))
    first = client.get("/models", params={"limit": "2"}).json()
    assert [model["modelName"] for model in first["models"]] == ["city-1", "city-2"]

    # When a model sorting before the token appears and the first one goes
    load(client, "city-0", farm.url("city-0"))
    client.delete("/models/city-1")
    rest = client.get("/models", params={"limit": "100", "next_page_token": first["nextPageToken"]}).json()

    # Then the next page goes on after the last name seen, skipping nothing and repeating nothing
    assert [model["modelName"] for model in rest["models"]] == ["city-4", "city-5"]
    assert "nextPageToken" not in rest


@pytest.mark.parametrize("limit", ["0", "-1", "1000"])
def test_an_out_of_range_limit_means_the_default_page(client: httpx.Client, farm: ModelFarm, limit: str) -> None:
    load(client, "city-0", farm.url("city-0"))

    page = client.get("/models", params={"limit": limit})

    assert page.status_code == 200
    assert [model["modelName"] for model in page.json()["models"]] == ["city-0"]


@pytest.mark.parametrize(
    "params", [{"limit": "two"}, {"next_page_token": "%%%"}, {"next_page_token": "_w"}], ids=["limit", "token", "utf8"]
)
def test_a_malformed_limit_or_page_token_is_400(client: httpx.Client, params: dict[str, str]) -> None:
    response = client.get("/models", params=params)

    assert response.status_code == 400
    assert response.json()["type"] == "BadRequestException"


def test_an_empty_container_lists_no_models_and_no_token(client: httpx.Client) -> None:
    assert client.get("/models").json() == {"models": []}


def test_unload_frees_the_name_and_the_model_stops_answering(client: httpx.Client, farm: ModelFarm) -> None:
    load(client, "city-4", farm.url("city-4"))

    unloaded = client.delete("/models/city-4")

    assert unloaded.status_code == 200
    assert unloaded.json() == {"status": 'Model "city-4" unloaded'}
    assert client.get("/models/city-4").status_code == 404
    assert invoke(client, "city-4").status_code == 404
    # And it can be loaded again
    assert load(client, "city-4", farm.url("city-4")).status_code == 200


def test_unload_reaches_every_worker(client: httpx.Client, container: ContainerProcess, farm: ModelFarm) -> None:
    # Given a model that both workers have mapped (new connections spread over the workers' sockets)
    load(client, "city-5", farm.url("city-5"))
    assert {fresh_connection_invoke(container.url, "city-5").status_code for _ in range(12)} == {200}

    # When it is unloaded through one of them
    assert client.delete("/models/city-5").status_code == 200

    # Then no worker answers for it any more
    assert {fresh_connection_invoke(container.url, "city-5").status_code for _ in range(12)} == {404}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/models/nowhere"), ("DELETE", "/models/nowhere"), ("POST", "/models/nowhere/invoke")],
)
def test_a_model_that_is_not_loaded_is_404(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path, content=NEW_HOUSE, headers={"content-type": "text/csv"})

    assert response.status_code == 404
    assert response.json() == {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: nowhere"}


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("relative/path", 400),
        ("/{root}/../../etc", 400),
        ("/etc", 400),
        ("/{root}/missing/model", 404),
        ("/{root}/city-0/model/forest.npz", 400),
        ("", 400),
        (12, 400),
    ],
    ids=["relative", "dotdot", "outside-root", "missing", "a-file", "empty", "not-a-string"],
)
def test_a_bad_url_is_400_or_404_and_loads_nothing(
    client: httpx.Client, farm: ModelFarm, url: object, status: int
) -> None:
    if isinstance(url, str):
        url = url.replace("/{root}", str(farm.root))

    response = client.post("/models", json={"model_name": "bad", "url": url})

    assert response.status_code == status, response.text
    assert client.get("/models").json() == {"models": []}


def test_a_hook_s_exception_is_500_with_its_message_as_json(client: httpx.Client, farm: ModelFarm) -> None:
    load(client, "city-6", farm.url("city-6"))

    response = invoke(client, "city-6", "1995,3000", accept="application/json")

    assert response.status_code == 500
    assert response.json()["type"] == "InvocationException"
    assert "expected 6 columns" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("PUT", "/models", 405), ("POST", "/ping", 405), ("GET", "/models/a/invoke", 405), ("GET", "/invocations", 404)],
)
def test_unknown_routes_and_methods_answer_json(client: httpx.Client, method: str, path: str, status: int) -> None:
    response = client.request(method, path)

    assert response.status_code == status
    assert response.json()["code"] == status


def test_the_container_serves_from_the_directory_even_when_the_url_is_given_through_a_link(
    client: httpx.Client, farm: ModelFarm, tmp_path: Path
) -> None:
    # A link inside the model root to a model directory inside it is the same model.
    alias = farm.root / "alias"
    if not alias.exists():
        alias.symlink_to(farm.root / "city-2")

    response = load(client, "alias", str(alias / "model"))

    assert response.status_code == 200, response.text
    assert invoke(client, "alias", OLD_HOUSE).json() == [102.0]
