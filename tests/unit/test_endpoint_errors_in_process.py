"""Every internal failure becomes its InvokeEndpoint wire error in one place, checked in process (ASGI, no sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from endpoint.app import create_app
from endpoint.config import EndpointConfig, ModelDataUrl
from endpoint.errors import ArtifactInvalid, ArtifactMissing, ContainerError, LoadTimeout, StorageUnavailable
from endpoint.store import Loaded
from testkit.models import write_program

ENDPOINT = "errors-in-process"
INVOKE = f"/endpoints/{ENDPOINT}/invocations"
HEADERS = {"X-Amzn-SageMaker-Target-Model": "m.tar.gz", "Content-Type": "text/csv"}
PROGRAM = """
def model_fn(model_dir):
    return "model"

def transform_fn(model, data, content_type, accept):
    if data == "boom":
        raise RuntimeError("bad row at /srv/secret/path.py")
    return "ok"
"""


def program_app(tmp_path: Path, **config: Any) -> Any:
    """The endpoint app running PROGRAM from ``tmp_path``, with no S3 behind it (``config`` overrides settings)."""
    write_program(tmp_path / "program", PROGRAM)
    settings = EndpointConfig(
        model_data_url=ModelDataUrl.parse("s3://bucket-x/models/"),
        endpoint_name=ENDPOINT,
        submit_directory=tmp_path / "program",
        cache_dir=tmp_path / "cache",
        **config,
    )
    return create_app(settings, s3_client=object())


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    yield program_app(tmp_path)
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def run() -> httpx.Response:
        # raise_app_exceptions=False: Starlette re-raises a handled 500 for the server to log.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://endpoint") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(run())


def load_raising(app: Any, error: BaseException) -> None:
    def load(name: str) -> Loaded[Any]:
        raise error

    app.state.runtime.store._load = load


def assert_wire_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["x-amzn-ErrorType"] == code
    assert response.headers["x-amzn-RequestId"]
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(response.content)
    assert body["Message"] == body["message"]
    return body


@pytest.mark.parametrize(
    ("error", "status", "code", "fragment"),
    [
        (ArtifactMissing("bucket-x", "models/m.tar.gz", "NoSuchKey"), 400, "ValidationError", "key: models/m.tar.gz"),
        (ArtifactInvalid("not gzip", "bucket-x", "models/m.tar.gz"), 400, "ValidationError", "Failed to extract"),
        (StorageUnavailable("connect timeout"), 503, "ServiceUnavailable", "try again"),
        (ContainerError("no model here", 500), 424, "ModelError", "no model here"),
        (LoadTimeout("Model m.tar.gz did not finish loading within 1 s."), 424, "ModelError", "did not finish"),
        (RuntimeError("a bug with /internal/paths"), 500, "InternalFailure", "internal failure"),
    ],
)
def test_load_failures_map_to_wire_errors(app: Any, error: Exception, status: int, code: str, fragment: str) -> None:
    # Given a load that fails this way
    load_raising(app, error)
    # When a request needs the model
    response = call(app, "POST", INVOKE, content="1,2", headers=HEADERS)
    # Then the client gets that wire error, never the internals of a bug
    body = assert_wire_error(response, status, code)
    assert fragment in body["Message"]
    assert "/internal/paths" not in response.text


def test_a_hook_error_reaches_the_client_without_its_traceback(app: Any) -> None:
    # Given a loaded model whose transform_fn raises with a server path in its message
    app.state.runtime.store._load = lambda name: Loaded(value="model", size_bytes=1)
    # Then the client gets a ModelError with the message, and no traceback
    response = call(app, "POST", INVOKE, content="boom", headers=HEADERS)
    body = assert_wire_error(response, 424, "ModelError")
    assert body["OriginalStatusCode"] == 500
    assert "bad row" in body["OriginalMessage"]
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


@pytest.mark.parametrize("name", ["a%2Fb", "a%2F..%2Fb", "-leading-dash", "x" * 64, "under_score"])
def test_an_invalid_endpoint_name_is_a_validation_error_in_aws_wording(app: Any, name: str) -> None:
    # When the EndpointName breaks SageMaker's pattern or length (an encoded slash included)
    response = call(app, "POST", f"/endpoints/{name}/invocations", content="1", headers=HEADERS)
    # Then it is SageMaker Runtime's ValidationError, as JSON, naming the field
    body = assert_wire_error(response, 400, "ValidationError")
    assert body["Message"].startswith("1 validation error detected: Value '")
    assert "at 'endpointName' failed to satisfy constraint" in body["Message"]


def test_an_unknown_endpoint_is_a_validation_error(app: Any) -> None:
    response = call(app, "POST", "/endpoints/someone-else/invocations", content="1", headers=HEADERS)
    body = assert_wire_error(response, 400, "ValidationError")
    assert body["Message"] == "Endpoint someone-else of account 000000000000 not found."


@pytest.mark.parametrize(("method", "path"), [("GET", INVOKE), ("POST", "/nowhere"), ("TRACE", "/ping")])
def test_unknown_operations_are_json_errors(app: Any, method: str, path: str) -> None:
    response = call(app, method, path)
    assert_wire_error(response, 404, "UnknownOperationException")


def test_a_body_that_stops_arriving_times_out_with_408_and_closes(tmp_path: Path) -> None:
    # Given a short body read timeout and a client that sends part of its body, then nothing
    app = program_app(tmp_path, body_read_timeout_seconds=0.2)
    sent: list[dict[str, Any]] = []
    first = [{"type": "http.request", "body": b"1,2", "more_body": True}]

    async def receive() -> dict[str, Any]:
        if first:
            return first.pop()
        await asyncio.sleep(3600)  # the rest never comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": INVOKE, "raw_path": INVOKE.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"x-amzn-sagemaker-target-model", b"m.tar.gz"), (b"content-length", b"100")],
        "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2),
    }  # fmt: skip

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await app(scope, receive, send)
        return loop.time() - started

    # When the app handles it
    elapsed = asyncio.run(scenario())
    # Then it answered 408 RequestTimeout within about the timeout, asking to close the connection
    start = next(message for message in sent if message["type"] == "http.response.start")
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    assert start["status"] == 408
    assert headers["x-amzn-errortype"] == "RequestTimeout"
    assert headers["connection"] == "close"
    assert elapsed < 2
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(tmp_path / "cache")
