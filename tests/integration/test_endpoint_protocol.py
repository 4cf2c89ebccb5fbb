"""The endpoint's wire protocol through a real boto3 sagemaker-runtime client, over sockets, with moto S3.

Each test gets a fresh endpoint (uvicorn in a thread, cold cache); moto and the artifacts are built once.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from botocore.parsers import create_parser
from sklearn.ensemble import RandomForestRegressor

from testkit.aws import sagemaker_runtime
from testkit.models import OPTIONS_PROGRAM, fit_forest, model_tar_gz, options_file, write_program
from testkit.servers import metric_value
from tests.integration.endpoint_harness import EndpointWorld, Start, artifact_bucket, csv_rows, invocation_error

pytestmark = pytest.mark.slow

BUCKET = "endpoint-protocol-tests"
PREFIX = "DEMO_MME_SCIKIT_V1/multi_model_artifacts/"
ENDPOINT = "house-prices-local"
FLAT = "Chicago_IL.tar.gz"
VERSIONED = "Chicago_IL.20261125T040000Z-1a2b3c4d.tar.gz"
REPO_TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"


@dataclass(frozen=True)
class ProtocolWorld(EndpointWorld):
    model: RandomForestRegressor  # behind every forest artifact


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProtocolWorld]:
    """moto S3 with real forest artifacts, and a directory with the options-driven test program."""
    model = fit_forest(seed=7)
    artifacts = {
        FLAT: model_tar_gz(model),
        VERSIONED: model_tar_gz(model),
        "broken.tar.gz": model_tar_gz(model, options_file(fail="boom")),
        "slow.tar.gz": model_tar_gz(model, options_file(load_delay=1)),
        "not-a-tar.tar.gz": b"definitely not gzip",
    }
    with artifact_bucket(BUCKET, PREFIX, artifacts) as s3_url:
        programs = tmp_path_factory.mktemp("programs")
        write_program(programs, OPTIONS_PROGRAM)
        yield ProtocolWorld(BUCKET, PREFIX, ENDPOINT, s3_url, programs, model)


ROWS = np.random.default_rng(3).uniform(0, 10, size=(4, 6))


def test_success_with_the_project_inference_program(start: Start, world: ProtocolWorld) -> None:
    # Given the endpoint running the project's own training/inference.py
    url, _ = start(submit_directory=REPO_TRAINING_DIR)
    client = sagemaker_runtime(url)
    # When a CSV batch is invoked for the notebook's flat name and for a versioned name
    for target in (FLAT, VERSIONED):
        response = client.invoke_endpoint(
            EndpointName=ENDPOINT, TargetModel=target, ContentType="text/csv", Body=csv_rows(ROWS)
        )
        # Then the JSON body equals model.predict, and the metadata is what SageMaker returns
        assert json.loads(response["Body"].read()) == pytest.approx(world.model.predict(ROWS).tolist(), rel=1e-12)
        assert response["ContentType"] == "application/json"
        assert response["InvokedProductionVariant"] == "AllTraffic"
        assert response["ResponseMetadata"]["RequestId"]


def test_default_hooks_accept_and_custom_attributes(start: Start, world: ProtocolWorld) -> None:
    # Given a program with only model_fn (container defaults for the rest)
    url, _ = start()
    client = sagemaker_runtime(url)
    expected = world.model.predict(ROWS.astype(np.float32))
    # When asked for CSV output, with custom attributes and an inference id
    response = client.invoke_endpoint(
        EndpointName=ENDPOINT,
        TargetModel=FLAT,
        ContentType="text/csv",
        Accept="text/csv",
        Body=csv_rows(ROWS),
        CustomAttributes="trace=abc",
        InferenceId="req-1",
    )
    # Then the container's CSV encoder answered; no attributes come back (only a container sets them,
    # and the image's toolkit gives hooks no way to)
    assert response["ContentType"] == "text/csv"
    assert [float(line) for line in response["Body"].read().decode().split()] == pytest.approx(expected.tolist())
    assert "CustomAttributes" not in response
    # And JSON and NPY requests decode the container's way
    as_json = client.invoke_endpoint(
        EndpointName=ENDPOINT, TargetModel=FLAT, ContentType="application/json", Body=json.dumps(ROWS.tolist())
    )
    assert json.loads(as_json["Body"].read()) == pytest.approx(expected.tolist())
    buffer = io.BytesIO()
    np.save(buffer, ROWS)
    as_npy = client.invoke_endpoint(
        EndpointName=ENDPOINT,
        TargetModel=FLAT,
        ContentType="application/x-npy",
        Accept="application/x-npy",
        Body=buffer.getvalue(),
    )
    assert np.load(io.BytesIO(as_npy["Body"].read())).tolist() == pytest.approx(world.model.predict(ROWS).tolist())


def test_unknown_target_model_is_a_validation_error_naming_bucket_and_key(start: Start) -> None:
    # Given a client that would retry retryable errors
    url, _ = start()
    client = sagemaker_runtime(url, retries={"mode": "standard", "max_attempts": 3})
    # When the TargetModel does not exist under the prefix
    error = invocation_error(client, "ValidationError", ENDPOINT, "Nowhere_XX.tar.gz")
    # Then botocore raised ValidationError naming bucket and key, and did not retry it
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert f"bucket: {BUCKET}, key: {PREFIX}Nowhere_XX.tar.gz" in error["Error"]["Message"]
    assert error["ResponseMetadata"]["RetryAttempts"] == 0
    # And the made-up name never becomes a metrics label (callers could mint unbounded series)
    assert metric_value(url, "endpoint_invocations_total", code="ValidationError") == 1
    assert "Nowhere_XX" not in httpx.get(f"{url}/metrics", timeout=10).text


def test_failing_model_fn_is_a_model_error_with_original_status(start: Start) -> None:
    url, _ = start()
    client = sagemaker_runtime(url, retries={"mode": "standard", "max_attempts": 3})
    # When model_fn raises
    response = invocation_error(client, "ModelError", ENDPOINT, "broken.tar.gz")
    # Then ModelError (424) carries what MMS answers (its 503 "Prediction failed": the image's toolkit
    # raises model_fn's error outside its own error handling), and is not retried
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 503
    assert json.loads(response["OriginalMessage"])["message"] == "Prediction failed"
    assert "boom" not in response["OriginalMessage"]
    assert response["LogStreamArn"].startswith("arn:aws:logs:")
    assert response["Error"]["Message"].startswith("Received server error (503) from primary")
    assert response["ResponseMetadata"]["RetryAttempts"] == 0


def test_bad_input_to_a_loaded_model_is_a_model_error(start: Start) -> None:
    url, _ = start(submit_directory=REPO_TRAINING_DIR)
    client = sagemaker_runtime(url)
    with pytest.raises(client.exceptions.ModelError) as caught:
        client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel=FLAT, ContentType="text/csv", Body="1,2,3")
    assert caught.value.response["OriginalStatusCode"] == 500
    assert "columns" in caught.value.response["OriginalMessage"]


def test_corrupt_artifact_is_a_validation_error(start: Start) -> None:
    url, _ = start()
    client = sagemaker_runtime(url)
    with pytest.raises(client.exceptions.ValidationError, match="Failed to extract model data"):
        client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel="not-a-tar.tar.gz", ContentType="text/csv", Body="1")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"EndpointName": "someone-else"}, "Endpoint someone-else of account"),
        ({"TargetModel": None}, "TargetModel"),
        ({"TargetModel": "../secrets.tar.gz"}, "relative"),
        ({"TargetModel": "/abs.tar.gz"}, "relative"),
    ],
)
def test_request_validation_errors(start: Start, kwargs: dict[str, Any], fragment: str) -> None:
    url, _ = start()
    client = sagemaker_runtime(url)
    params = {"EndpointName": ENDPOINT, "TargetModel": FLAT, "ContentType": "text/csv", "Body": "1", **kwargs}
    params = {key: value for key, value in params.items() if value is not None}
    with pytest.raises(client.exceptions.ValidationError, match=fragment):
        client.invoke_endpoint(**params)


def test_oversized_body_is_refused(start: Start) -> None:
    url, runtime = start()
    client = sagemaker_runtime(url)
    limit = runtime.config.max_body_bytes
    # When the body is one byte over 6 MiB (Content-Length known)
    with pytest.raises(client.exceptions.ValidationError, match=f"at most {limit} bytes"):
        client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel=FLAT, ContentType="text/csv", Body=b"1" * (limit + 1))

    # And when it is streamed without a Content-Length (chunked)
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"1" * 1_048_576

    response = httpx.post(
        f"{url}/endpoints/{ENDPOINT}/invocations",
        content=chunks(),
        headers={"X-Amzn-SageMaker-Target-Model": FLAT, "Content-Type": "text/csv"},
        timeout=30,
    )
    # Then both are ValidationErrors and the model was never loaded
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"] == "ValidationError"
    assert runtime.store.loaded_names == []
    # And exactly 6 MiB is still accepted up to the model (which then rejects the junk)
    with pytest.raises(client.exceptions.ModelError):
        client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel=FLAT, ContentType="text/csv", Body=b"1" * limit)


def test_model_not_ready_standard_mode_fails_and_legacy_mode_retries(start: Start) -> None:
    # Given a model that takes 1 s to load and a 0.2 s wait limit
    url, _ = start(model_load_wait_seconds=0.2)
    standard = sagemaker_runtime(url, retries={"mode": "standard", "max_attempts": 2})
    # When a standard-mode client invokes it cold
    with pytest.raises(standard.exceptions.ModelNotReadyException) as caught:
        standard.invoke_endpoint(EndpointName=ENDPOINT, TargetModel="slow.tar.gz", ContentType="text/csv", Body="1")
    # Then it got 429 ModelNotReadyException without retrying (standard mode does not treat 429 as throttling)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    # And a legacy-mode client (which retries any 429) gets through once the load, which carried on, completes
    legacy = sagemaker_runtime(url, retries={"mode": "legacy", "max_attempts": 10})
    rows = csv_rows(ROWS)
    response = legacy.invoke_endpoint(
        EndpointName=ENDPOINT, TargetModel="slow.tar.gz", ContentType="text/csv", Body=rows
    )
    assert len(json.loads(response["Body"].read())) == len(ROWS)
    assert metric_value(url, "endpoint_model_loads_total") == 1


def test_unreachable_s3_is_service_unavailable_and_retried(
    start: Start, monkeypatch: pytest.MonkeyPatch, free_port: int
) -> None:
    # Given an endpoint whose S3 is a closed port
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port}")
    url, _ = start()
    client = sagemaker_runtime(url, retries={"mode": "standard", "total_max_attempts": 2})
    # Then the caller sees ServiceUnavailable (503), which boto3 retries
    with pytest.raises(client.exceptions.ServiceUnavailable) as caught:
        client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel=FLAT, ContentType="text/csv", Body="1")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 1


def test_unexpected_failure_is_internal_failure(start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a bug inside the endpoint itself (not the model)
    url, runtime = start()

    def broken_fetch(target_model: str) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(runtime.artifacts, "fetch", broken_fetch)
    client = sagemaker_runtime(url)
    # Then botocore raises InternalFailure (500) and the message does not leak internals
    with pytest.raises(client.exceptions.InternalFailure) as caught:
        client.invoke_endpoint(EndpointName=ENDPOINT, TargetModel=FLAT, ContentType="text/csv", Body="1")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert "bug" not in caught.value.response["Error"]["Message"]


def test_ping_and_metrics(start: Start) -> None:
    url, _ = start()
    assert httpx.get(f"{url}/ping").status_code == 200
    metrics = httpx.get(f"{url}/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in (
        "ModelLoadingWaitTime",
        "ModelDownloadingTime",
        "ModelLoadingTime",
        "ModelUnloadingTime",
        "ModelCacheHit",
        "LoadedModelCount",
    ):
        assert f"# TYPE {name} " in metrics.text


def raw_exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is on a fresh connection; read until the server closes it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(request)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    # Header names lower-cased, as HTTP compares them (and botocore's header dict does)
    headers = {name.decode().lower(): value.decode() for name, _, value in (line.partition(b": ") for line in lines)}
    return int(status.split()[1]), headers, body


def invocation(target_model: bytes, method: bytes = b"POST") -> bytes:
    return (
        method + b" /endpoints/" + ENDPOINT.encode() + b"/invocations HTTP/1.1\r\nHost: runtime\r\n"
        b"Content-Type: text/csv\r\nX-Amzn-SageMaker-Target-Model: " + target_model + b"\r\n"
        b"Content-Length: 1\r\n\r\n1"
    )


@pytest.mark.parametrize(
    ("request_bytes", "fragment"),
    [
        # Control characters the HTTP parser itself rejects, and one it lets through (TAB) to the validation
        (invocation(b"Chicago\x01_IL.tar.gz"), "TargetModel must consist of printable characters"),
        (invocation(b"Chicago_IL.tar.gz\x7f"), "TargetModel must consist of printable characters"),
        (invocation(b"Chicago\x00_IL.tar.gz"), "TargetModel must consist of printable characters"),
        (invocation(b"Chicago\t_IL.tar.gz"), "TargetModel must consist of printable characters"),
        # Not a TargetModel problem: the message names what the parser rejected
        (invocation(b"Chicago_IL.tar.gz", method=b"post"), "not valid HTTP/1.1: Invalid method"),
    ],
    ids=["SOH", "DEL", "NUL", "TAB", "lower-case method"],
)
def test_unparsable_requests_are_json_validation_errors_botocore_reads(
    start: Start, request_bytes: bytes, fragment: str
) -> None:
    # Given a request with a TargetModel header SageMaker's validation refuses (or one that is not HTTP/1.1)
    url, _ = start()
    # When it reaches the endpoint over a raw socket
    status, headers, body = raw_exchange(url, request_bytes)
    # Then it is InvokeEndpoint's JSON ValidationError, as for any other invalid parameter
    assert status == 400
    assert headers["x-amzn-errortype"] == "ValidationError"
    assert headers["x-amzn-requestid"]
    assert headers["content-type"] == "application/json"
    assert fragment in json.loads(body)["Message"]
    # And botocore reads it as such
    operation = sagemaker_runtime(url).meta.service_model.operation_model("InvokeEndpoint")
    parsed = create_parser("rest-json").parse(
        {"status_code": status, "headers": headers, "body": body}, operation.output_shape
    )
    assert parsed["Error"]["Code"] == "ValidationError"
    assert fragment in parsed["Error"]["Message"]
