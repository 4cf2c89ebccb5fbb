"""Hostile model directories and hostile requests against the real command: answers, never a crash or code run.

Model directories: links out of them, FIFOs, huge (sparse) files, corrupted or pickled forests, a
pickle-only model, a model bringing its own code. Requests: oversized, slow, malformed or mistyped
bodies, control characters and traversal in names, raw garbage on the socket. After all of it every
worker is still the one that started (none died), and the container answers.
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from tests.container_harness import (
    NEW_HOUSE,
    ContainerProcess,
    ModelFarm,
    invoke,
    load,
    running_container,
    tiny_forest,
)
from tests.pickle_payloads import WritesMarker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> ModelFarm:
    return ModelFarm(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def container(farm: ModelFarm) -> Iterator[ContainerProcess]:
    env = {"CONTAINER_BODY_READ_TIMEOUT_SECONDS": "1", "CONTAINER_MAX_MODEL_DIR_BYTES": str(10 * 1024**2)}
    with running_container(farm.root, workers=2, env=env) as running:
        workers = running.pids()
        yield running
        # No request or model above crashed a worker: the same processes serve, and they still answer.
        assert running.pids() == workers
        assert "died" not in running.output()
        with running.client as client:
            assert client.get("/ping").status_code == 200


@pytest.fixture
def client(container: ContainerProcess) -> Iterator[httpx.Client]:
    with container.client as client:
        yield client


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A file that exists afterwards only if something ran a pickle (or a model's code)."""
    return tmp_path / "code-ran"


def _model_with(farm: ModelFarm, name: str, build: dict[str, bytes] | None = None) -> Path:
    farm.add(name, None, files=build or {})
    return Path(farm.url(name))


@pytest.mark.parametrize("kind", ["file-link-out", "dir-link-out", "fifo", "sparse-huge", "dangling-link"])
def test_a_model_directory_breaking_the_rules_is_refused_before_any_file_is_opened(
    client: httpx.Client, farm: ModelFarm, kind: str
) -> None:
    # Given a model directory holding something no model needs
    directory = _model_with(farm, kind, {"forest.npz": tiny_forest()})
    target = directory / "extra"
    if kind == "file-link-out":
        target.symlink_to("/etc/passwd")
    elif kind == "dir-link-out":
        target.symlink_to("/etc")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "sparse-huge":
        with target.open("wb") as handle:
            handle.truncate(64 * 1024**2)
    else:
        target.symlink_to(directory / "gone")

    # When it is loaded
    response = load(client, kind, str(directory))

    # Then it is refused with the reason, and nothing is loaded
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "InvalidModelException"
    assert client.get(f"/models/{kind}").status_code == 404


def _npz_with_object_array(marker: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in ("meta", "trees", "feature", "threshold", "first_child", "value"):
            member = io.BytesIO()
            np.save(member, np.array([WritesMarker(marker)], dtype=object), allow_pickle=True)
            archive.writestr(f"{name}.npy", member.getvalue())
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["garbage", "truncated", "object-arrays", "pickle-only"])
def test_an_unservable_model_loads_as_a_reason_that_each_invocation_reports_and_runs_no_code(
    client: httpx.Client, farm: ModelFarm, marker: Path, kind: str
) -> None:
    # Given a model directory whose forest is damaged, holds pickled objects, or is only a pickle
    files = {
        "garbage": {"forest.npz": os.urandom(4096)},
        "truncated": {"forest.npz": tiny_forest()[:300]},
        "object-arrays": {"forest.npz": _npz_with_object_array(marker)},
        "pickle-only": {"model.joblib": pickle.dumps(WritesMarker(marker))},
    }[kind]
    directory = _model_with(farm, f"unservable-{kind}", files)

    # When it is loaded and invoked
    loaded = load(client, f"unservable-{kind}", str(directory))
    answer = invoke(client, f"unservable-{kind}")

    # Then the program's model_fn kept the reason (training/inference.py), each invocation reports it, and no
    # pickle ran
    assert loaded.status_code == 200, loaded.text
    assert answer.status_code == 500
    assert "this model cannot be served" in answer.json()["message"]
    assert not marker.exists()
    client.delete(f"/models/unservable-{kind}")


def test_a_model_bringing_its_own_code_is_refused_unless_the_operator_allows_it(
    client: httpx.Client, farm: ModelFarm, marker: Path
) -> None:
    source = f"open({str(marker)!r}, 'w').write('ran')\ndef model_fn(model_dir):\n    return None\n"
    directory = _model_with(farm, "own-code", {"forest.npz": tiny_forest(), "code/inference.py": source.encode()})

    response = load(client, "own-code", str(directory))

    assert response.status_code == 400
    assert "ALLOW_MODEL_CODE=true" in response.json()["message"]
    assert not marker.exists()


def test_an_oversized_invoke_body_is_413_before_it_is_read(client: httpx.Client, farm: ModelFarm) -> None:
    load(client, "sized", farm.add("sized", tiny_forest()))

    declared = client.post("/models/sized/invoke", content=b"1" * (6_291_456 + 1), headers={"content-type": "text/csv"})
    chunked = client.post(
        "/models/sized/invoke",
        content=iter([b"1" * 1_048_576] * 7),
        headers={"content-type": "text/csv"},
    )

    assert declared.status_code == 413
    assert chunked.status_code == 413
    assert invoke(client, "sized").status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"model_name": "x", "url": "/x"', "application/json", 400),
        (b'["model_name", "url"]', "application/json", 400),
        (b"[" * 70_000, "application/json", 413),
        (b"[" * 30_000 + b"]" * 30_000, "application/json", 400),
        (b"\xff\xfe\x00garbage", "application/json", 400),
        (b"model_name=x&url=/x", "application/x-www-form-urlencoded", 415),
        (b'{"model_name": "x", "url": "/x"}' + b" " * 70_000, "application/json", 413),
        (b'{"model_name": "a\\u0000b", "url": "/x"}', "application/json", 400),
        (b'{"model_name": "../../etc/passwd", "url": "/x"}', "application/json", 400),
        (b'{"model_name": "' + b"n" * 1025 + b'", "url": "/x"}', "application/json", 400),
        (b'{"url": "/x"}', "application/json", 400),
    ],
    ids=[
        "truncated-json",
        "not-an-object",
        "deep-and-too-big",
        "deep-nesting",
        "not-utf8",
        "form",
        "too-big",
        "nul-in-name",
        "slash-in-name",
        "long-name",
        "no-name",
    ],
)
def test_a_malformed_load_request_is_answered_and_loads_nothing(
    client: httpx.Client, body: bytes, content_type: str, status: int
) -> None:
    response = client.post("/models", content=body, headers={"content-type": content_type})

    assert response.status_code == status, response.text
    assert response.json()["code"] == status
    loaded = {model["modelName"] for model in client.get("/models").json()["models"]}
    assert not loaded & {"x", "a\x00b", "../../etc/passwd"}


@pytest.mark.parametrize(
    ("path", "status"),
    [("/models/a%01b", 400), ("/models/a%2Fb", 404), ("/models/%2E%2E%2F%2E%2E%2Fetc", 404), ("/models/%20x", 400)],
    ids=["control-char", "encoded-slash", "encoded-traversal", "leading-space"],
)
def test_control_characters_and_traversal_in_a_path_name_are_refused(
    container: ContainerProcess, path: str, status: int
) -> None:
    # Raw paths: httpx would normalise them.
    response = _raw(container, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())

    assert response.startswith(f"HTTP/1.1 {status} ".encode()), response[:200]


def test_bad_header_values_for_the_sagemaker_headers_are_400(client: httpx.Client, farm: ModelFarm) -> None:
    load(client, "headers", farm.add("headers", tiny_forest()))

    too_long = invoke(client, "headers", **{"X-Amzn-SageMaker-Custom-Attributes": "a" * 1025})
    not_ascii = client.post(
        "/models/headers/invoke",
        content=NEW_HOUSE,
        headers={b"content-type": b"text/csv", b"X-Amzn-SageMaker-Inference-Id": "caf\u00e9".encode()},
    )

    assert too_long.status_code == 400
    assert not_ascii.status_code == 400


def test_an_invoke_body_that_is_not_text_is_the_hook_s_500(client: httpx.Client, farm: ModelFarm) -> None:
    load(client, "binary", farm.add("binary", tiny_forest()))

    response = client.post("/models/binary/invoke", content=b"\xff\xfe\x00\x01", headers={"content-type": "text/csv"})

    assert response.status_code == 500
    assert response.json()["type"] == "InvocationException"


def test_a_body_that_stops_arriving_is_408_and_the_connection_closes(container: ContainerProcess) -> None:
    started = time.monotonic()
    response = _raw(
        container,
        b"POST /models HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        wait=5,
    )

    assert response.startswith(b"HTTP/1.1 408 "), response[:200]
    assert b"connection: close" in response.lower()
    assert time.monotonic() - started < 4


@pytest.mark.parametrize(
    "raw",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /models HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["tls-hello", "negative-length", "bad-chunk", "huge-request-line"],
)
def test_garbage_on_the_socket_is_refused_and_the_container_keeps_serving(
    container: ContainerProcess, raw: bytes
) -> None:
    response = _raw(container, raw)

    assert response == b"" or response.startswith(b"HTTP/1.1 4"), response[:200]
    with container.client as client:
        assert client.get("/ping").status_code == 200


def _raw(container: ContainerProcess, request: bytes, wait: float = 5) -> bytes:
    """Send bytes as they are and read the answer until the server closes (or ``wait`` passes)."""
    address = urlsplit(container.url)
    with socket.create_connection((address.hostname, int(address.port or 80)), timeout=wait) as sock:
        try:
            sock.sendall(request)
        except OSError:
            return b""
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def test_after_all_of_it_a_good_model_still_loads_and_answers(client: httpx.Client, farm: ModelFarm) -> None:
    response = load(client, "good", farm.add("good", tiny_forest()))

    assert response.status_code == 200
    assert invoke(client, "good", NEW_HOUSE).json() == [200.0]
