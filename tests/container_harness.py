"""The dense container's test helpers: tiny forests, model directories, and the real command as a process.

Forests are built straight from node arrays (no scikit-learn, microseconds each), so a test can make
thousands; a ``ModelFarm`` lays them out as SageMaker does (``ROOT/{name}/model/forest.npz``); a
``ContainerProcess`` runs ``python -m container`` on a free port over real sockets and drains its log,
so a chatty server never blocks on a full pipe.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

from house_prices.schema import FEATURE_NAMES
from packed_forest.format import LEAF_THRESHOLD, make_meta, validate, write
from testkit.servers import startup_url

REPO_ROOT = Path(__file__).resolve().parents[1]
# A house; the tiny forest splits on YEAR_BUILT at 1990.
OLD_HOUSE = "1980,3000,4,2.5,1.0,2"
NEW_HOUSE = "1995,3000,4,2.5,1.0,2"


def tiny_forest(low: float = 100.0, high: float = 200.0) -> bytes:
    """``forest.npz`` of one tree: YEAR_BUILT <= 1990 predicts ``low``, later houses ``high``."""
    arrays = validate(
        make_meta(FEATURE_NAMES, n_trees=1, n_nodes=3, producer={"test": "container_harness"}),
        trees=np.array([0, 3], dtype="<i8"),
        feature=np.array([0, 0, 0], dtype="<i4"),
        threshold=np.array([1990.0, LEAF_THRESHOLD, LEAF_THRESHOLD], dtype="<f4"),
        first_child=np.array([1, 1, 2], dtype="<i4"),
        value=np.array([150.0, low, high], dtype="<f8"),
    )
    buffer = io.BytesIO()
    write(buffer, arrays)
    return buffer.getvalue()


def complete_forest(n_trees: int, depth: int, seed: int = 0) -> bytes:
    """``forest.npz`` of ``n_trees`` complete trees of ``depth`` levels (breadth-first, siblings adjacent)."""
    rng = np.random.default_rng(seed)
    per_tree = 2 ** (depth + 1) - 1
    internal = 2**depth - 1
    local = np.arange(per_tree)
    feature, threshold, first_child, value = [], [], [], []
    for tree in range(n_trees):
        base = tree * per_tree
        is_leaf = local >= internal
        feature.append(np.where(is_leaf, 0, rng.integers(0, len(FEATURE_NAMES), per_tree)))
        threshold.append(np.where(is_leaf, LEAF_THRESHOLD, rng.uniform(0, 3000, per_tree)))
        first_child.append(np.where(is_leaf, base + local, base + 2 * local + 1))
        value.append(rng.uniform(50_000, 900_000, per_tree))
    arrays = validate(
        make_meta(FEATURE_NAMES, n_trees=n_trees, n_nodes=n_trees * per_tree, producer={"test": "container_harness"}),
        trees=np.arange(n_trees + 1, dtype="<i8") * per_tree,
        feature=np.concatenate(feature).astype("<i4"),
        threshold=np.concatenate(threshold).astype("<f4"),
        first_child=np.concatenate(first_child).astype("<i4"),
        value=np.concatenate(value).astype("<f8"),
    )
    buffer = io.BytesIO()
    write(buffer, arrays)
    return buffer.getvalue()


@dataclass
class ModelFarm:
    """Model directories under ``root`` as SageMaker lays them out: ``root/{name}/model``."""

    root: Path

    def add(self, name: str, forest: bytes | None = None, *, files: Mapping[str, bytes] | None = None) -> str:
        """Write a model directory; returns its url (the path POST /models takes)."""
        directory = self.root / name / "model"
        directory.mkdir(parents=True, exist_ok=True)
        if forest is not None:
            (directory / "forest.npz").write_bytes(forest)
        for relative, data in (files or {}).items():
            path = directory / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return str(directory)

    def link(self, name: str, source: Path) -> str:
        """A model directory whose forest.npz is a hard link to ``source`` (cheap: thousands in a second)."""
        directory = self.root / name / "model"
        directory.mkdir(parents=True, exist_ok=True)
        os.link(source, directory / "forest.npz")
        return str(directory)

    def url(self, name: str) -> str:
        return str(self.root / name / "model")


@dataclass
class ContainerProcess:
    """``python -m container`` running as a child process; ``client`` talks to it over loopback."""

    process: subprocess.Popen[str]
    url: str
    log: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=2000))

    @property
    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def output(self) -> str:
        return "".join(self.log)

    def pids(self) -> list[int]:
        """The supervisor and its workers (children)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            workers = [int(pid) for pid in children.read_text().split()]
        except OSError:
            workers = []
        return [self.process.pid, *workers]


@contextlib.contextmanager
def running_container(
    model_root: Path,
    *,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    budget_bytes: int | None = 1 << 30,
) -> Iterator[ContainerProcess]:
    """Start the image's command on a free port; stop it (SIGTERM, then SIGKILL) when the block ends."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("CONTAINER_", "SAGEMAKER_", "ALLOW_"))
    }
    environment.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    if budget_bytes is not None:
        environment["CONTAINER_MEMORY_BUDGET_BYTES"] = str(budget_bytes)
    command = [
        sys.executable,
        "-m",
        "container",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--workers",
        str(workers),
        "--model-root",
        str(model_root),
        "--exit-with-parent",
        *args,
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = startup_url(process, timeout=60)
        running = ContainerProcess(process, url)
        drain = threading.Thread(target=_drain, args=(process, running.log), daemon=True)
        drain.start()
        _wait_until_serving(running)
        yield running
    finally:
        stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after 15 s; the pipe its log came through is closed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _drain(process: subprocess.Popen[str], log: collections.deque[str]) -> None:
    assert process.stdout is not None
    with contextlib.suppress(ValueError, OSError):
        for line in process.stdout:
            log.append(line)


def _wait_until_serving(running: ContainerProcess, timeout: float = 30) -> None:
    """The sockets listen from the first line; wait until workers answer too, so tests never time a boot."""
    deadline = time.monotonic() + timeout
    with running.client as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/ping").status_code == 200:
                    return
            if time.monotonic() > deadline or running.process.poll() is not None:
                raise RuntimeError("container did not answer /ping; its output:\n" + running.output())
            time.sleep(0.05)


def load(client: httpx.Client, name: str, url: str) -> httpx.Response:
    return client.post("/models", json={"model_name": name, "url": url})


def invoke(client: httpx.Client, name: str, body: str = NEW_HOUSE, **headers: str) -> httpx.Response:
    return client.post(f"/models/{name}/invoke", content=body, headers={"content-type": "text/csv", **headers})


def fresh_connection_invoke(url: str, name: str, body: str = NEW_HOUSE) -> httpx.Response:
    """One invocation on a new connection: with SO_REUSEPORT each one may reach another worker."""
    with httpx.Client(base_url=url, timeout=30) as client:
        return invoke(client, name, body)


def pipelined(url: str, requests: list[bytes], depth: int = 32) -> list[int]:
    """Send raw HTTP/1.1 requests on one connection, ``depth`` in flight at a time; their statuses in order.

    A Python HTTP client costs more CPU per request than the container does: for thousands of requests
    the test would measure its own client. Pipelining keeps the client to a write and a parse.
    """
    address = urlsplit(url)
    statuses: list[int] = []
    buffer = b""
    with socket.create_connection((address.hostname, int(address.port or 80)), timeout=30) as sock:
        sent = 0
        while len(statuses) < len(requests):
            if sent < len(requests) and sent - len(statuses) < depth:
                batch = requests[sent : sent + depth - (sent - len(statuses))]
                sock.sendall(b"".join(batch))
                sent += len(batch)
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"the container closed the connection after {len(statuses)} answers")
            buffer += chunk
            while (end := buffer.find(b"\r\n\r\n")) >= 0:
                head = buffer[:end].decode("latin-1")
                length = int(re.search(r"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                if len(buffer) < end + 4 + length:
                    break
                statuses.append(int(head.split(" ", 2)[1]))
                buffer = buffer[end + 4 + length :]
    return statuses


def load_request(name: str, url: str) -> bytes:
    body = json.dumps({"model_name": name, "url": url}).encode()
    return (
        b"POST /models HTTP/1.1\r\nHost: container\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


# A test program: each model_fn call is recorded (pid, directory) in LOAD_LOG; options.json in a model slows its
# load, fails it, or slows every prediction.
RECORDING_PROGRAM = """
import json
import os
import time

from packed_forest import PackedForest


class Slow:
    def __init__(self, forest, delay):
        self.forest = forest
        self.delay = delay


def model_fn(model_dir):
    with open(os.environ["LOAD_LOG"], "a") as log:
        log.write(f"{os.getpid()} {model_dir}\\n")
    path = os.path.join(model_dir, "options.json")
    options = json.load(open(path)) if os.path.exists(path) else {}
    time.sleep(options.get("load_delay", 0))
    if options.get("fail"):
        raise RuntimeError(options["fail"])
    return Slow(PackedForest.load(os.path.join(model_dir, "forest.npz"), mmap=True), options.get("predict_delay", 0))


def predict_fn(data, model):
    time.sleep(model.delay)
    return model.forest.predict(data)
"""


def recorded_loads(log: Path) -> list[tuple[int, str]]:
    if not log.exists():
        return []
    return [(int(pid), directory) for pid, directory in (line.split(" ", 1) for line in log.read_text().splitlines())]
