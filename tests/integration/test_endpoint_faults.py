"""Faults the endpoint survives over real sockets: hostile bodies, frozen S3, bad model_fn, eviction in flight."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor

from endpoint.sockets import listening_socket
from testkit.aws import sagemaker_runtime
from testkit.models import OPTIONS_PROGRAM, fit_forest, model_tar_gz, options_file, write_program
from testkit.servers import metric_value
from tests.integration.endpoint_harness import (
    EndpointWorld,
    Start,
    artifact_bucket,
    csv_rows,
    invocation_error,
    invoke_many,
)

pytestmark = pytest.mark.slow

BUCKET = "endpoint-fault-tests"
PREFIX = "multi_model_artifacts/"
ENDPOINT = "faults"
MODELS = [f"Fault{index}_XX.tar.gz" for index in range(5)]
REPO_TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"
ROWS = np.random.default_rng(5).uniform(0, 10, size=(2, 6))
# Predictions that take long enough for evictions to happen while they run.
SLOW_PREDICT_PROGRAM = (
    OPTIONS_PROGRAM
    + """

def predict_fn(data, model):
    time.sleep(0.2)
    return model.predict(data.reshape(-1, model.n_features))
"""
)


@dataclass(frozen=True)
class FaultsWorld(EndpointWorld):
    models: dict[str, RandomForestRegressor]  # behind each of MODELS
    slow_program: Path  # SLOW_PREDICT_PROGRAM's directory; ``programs`` holds OPTIONS_PROGRAM


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultsWorld]:
    models = dict(zip(MODELS, (fit_forest(seed=20 + index) for index in range(len(MODELS))), strict=True))
    first = models[MODELS[0]]
    artifacts = {
        **{name: model_tar_gz(model) for name, model in models.items()},
        "hangs.tar.gz": model_tar_gz(first, options_file(load_delay=3)),
        "raises.tar.gz": model_tar_gz(first, options_file(fail="no weights")),
    }
    with artifact_bucket(BUCKET, PREFIX, artifacts) as s3_url:
        programs = tmp_path_factory.mktemp("programs")
        write_program(programs / "options", OPTIONS_PROGRAM)
        write_program(programs / "slow", SLOW_PREDICT_PROGRAM)
        yield FaultsWorld(BUCKET, PREFIX, ENDPOINT, s3_url, programs / "options", models, programs / "slow")


def test_complex_npy_body_is_a_client_error_not_a_silent_cast(start: Start) -> None:
    # Given the project's inference.py
    url, _ = start(submit_directory=REPO_TRAINING_DIR)
    client = sagemaker_runtime(url)
    buffer = io.BytesIO()
    np.save(buffer, ROWS + 1j)
    # When a complex-valued npy body arrives
    with pytest.raises(client.exceptions.ModelError) as caught:
        client.invoke_endpoint(
            EndpointName=ENDPOINT, TargetModel=MODELS[0], ContentType="application/x-npy", Body=buffer.getvalue()
        )
    # Then it is refused (a 4xx to the client, naming the dtype), never answered with the real parts
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert "complex" in response["OriginalMessage"]


def test_a_half_sent_body_is_answered_408_and_closed_within_the_read_timeout(start: Start) -> None:
    # Given a 0.5 s body read timeout
    url, _ = start(body_read_timeout_seconds=0.5)
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /endpoints/{ENDPOINT}/invocations HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/csv\r\n"
        f"X-Amzn-SageMaker-Target-Model: {MODELS[0]}\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # When the client sends the headers and a tenth of its body, then stalls
        started = time.monotonic()
        sock.sendall(head.encode() + b"1" * 100)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        elapsed = time.monotonic() - started
    # Then it got a JSON RequestTimeout after about the timeout, and the server closed the connection
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert b"x-amzn-errortype: requesttimeout" in rest.lower()
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["message"].startswith("The request body was not received")
    assert elapsed < 3


def test_a_cold_load_with_s3_frozen_fails_fast_and_retryably(start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an S3 that accepts connections and never answers (a stopped process: the kernel still accepts)
    frozen = listening_socket("127.0.0.1", 0)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{frozen.getsockname()[1]}")
        url, _ = start(s3_read_timeout_seconds=0.5, s3_max_attempts=2)
        client = sagemaker_runtime(url, read_timeout=30)
        # When a cold model is requested
        started = time.monotonic()
        with pytest.raises(client.exceptions.ServiceUnavailable) as caught:
            client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel=MODELS[1], ContentType="text/csv", Body="1")
        elapsed = time.monotonic() - started
    finally:
        frozen.close()
    # Then it fails within the S3 budget (2 x 0.5 s read timeout + backoff) with a retryable 503
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert elapsed < 5


def test_model_fn_raising_is_a_model_error_without_traceback_or_paths(start: Start, world: FaultsWorld) -> None:
    url, runtime = start()
    client = sagemaker_runtime(url)
    response = invocation_error(client, "ModelError", ENDPOINT, "raises.tar.gz")
    # Then it is what the image answers (MMS swallows model_fn's error: 503 "Prediction failed"), with
    # neither the traceback nor any path of this machine; the reason is in the endpoint's log only
    assert response["OriginalStatusCode"] == 503
    assert json.loads(response["OriginalMessage"])["message"] == "Prediction failed"
    assert "Traceback" not in json.dumps(response)
    assert str(runtime.cache_dir) not in json.dumps(response)
    assert str(world.programs.parent) not in json.dumps(response)  # the directory of every program here


def test_model_fn_hanging_past_the_load_timeout_fails_cleanly_and_fast(start: Start) -> None:
    # Given a model_fn that takes 3 s and a 0.5 s load timeout
    url, _ = start(model_load_timeout_seconds=0.5)
    client = sagemaker_runtime(url)
    # When it is requested
    started = time.monotonic()
    with pytest.raises(client.exceptions.ModelError) as caught:
        client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel="hangs.tar.gz", ContentType="text/csv", Body="1")
    first = time.monotonic() - started
    # Then it fails after the load timeout with a clear message
    assert "did not finish loading within 0.5 s" in caught.value.response["OriginalMessage"]
    assert first < 2
    # And while the stuck load still runs, requests for it fail at once instead of starting another load
    started = time.monotonic()
    with pytest.raises(client.exceptions.ModelError):
        client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel="hangs.tar.gz", ContentType="text/csv", Body="1")
    assert time.monotonic() - started < 0.5
    assert metric_value(url, "endpoint_model_loads_total") == 0
    # And the endpoint keeps serving other models
    response = client.invoke_endpoint(
        EndpointName=ENDPOINT, TargetModel=MODELS[2], ContentType="text/csv", Body=csv_rows(ROWS)
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert httpx.get(f"{url}/ping").status_code == 200


def test_eviction_during_in_flight_requests_is_safe(start: Start, world: FaultsWorld) -> None:
    # Given room for one model and predictions that take 0.2 s
    url, runtime = start(submit_directory=world.slow_program, max_models=1)
    targets = [name for name in MODELS for _ in range(4)]

    # When 20 requests for 5 models run at once, so models are evicted while others predict
    responses = asyncio.run(invoke_many(url, ENDPOINT, targets, csv_rows(ROWS)))
    # Then every request got its own model's answer
    for target, response in zip(targets, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.json() == pytest.approx(world.models[target].predict(ROWS).tolist(), rel=1e-12)
    # And once the leases are released the cache is back within its bound
    assert len(runtime.store.loaded_names) <= 1
    assert metric_value(url, "endpoint_model_unloads_total") >= len(MODELS) - 1
