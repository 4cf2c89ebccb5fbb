"""Helpers to run the endpoint (and a local S3) in-process: used by tests and ``bench/``.

moto and scikit-learn are imported lazily, so importing this module costs nothing in production.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from endpoint.http import SocketServer, server_config
from endpoint.sockets import listening_socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` under uvicorn in a daemon thread; yields its base URL; shuts it down (lifespan too).

    The socket is bound here, before uvicorn starts, so port 0 needs no free-port guess that
    another process could take first.
    """
    sock = listening_socket(host, port)
    port = sock.getsockname()[1]
    server = SocketServer(server_config(app, timeout_graceful_shutdown=5), sock)
    thread = threading.Thread(target=server.serve_forever, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        thread.join(timeout=15)
        sock.close()


def startup_url(process: subprocess.Popen[str], timeout: float = 60) -> str:
    """Read a child server's output until its ``listening on http://127.0.0.1:PORT`` line; its base URL.

    ``python -m endpoint`` announces itself so (as do the bench's peers). A child that exits or stays
    silent past ``timeout`` is killed, and the error carries what it printed.
    """
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match:
            return match.group(1)
    process.kill()
    raise RuntimeError("server did not start; its output: " + "".join(seen))


@contextlib.contextmanager
def moto_s3(bucket: str) -> Iterator[str]:
    """A moto server on 127.0.0.1 and a free port with ``bucket`` created; yields its URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per S3 call otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        s3_client(url).create_bucket(Bucket=bucket)
        yield url
    finally:
        server.stop()


def s3_client(endpoint_url: str) -> Any:
    """An S3 client for a local moto server (dummy credentials, usable before env fixtures apply)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def fit_forest(seed: int, n_rows: int = 200, n_features: int = 6, n_estimators: int = 10, **params: Any) -> Any:
    """A small RandomForestRegressor on random data (real model, real file, seconds to build)."""
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(seed)
    features = rng.uniform(0, 10, size=(n_rows, n_features))
    target = features @ rng.uniform(1, 5, size=n_features) + rng.normal(0, 1, size=n_rows)
    params.setdefault("min_samples_leaf", 3)
    return RandomForestRegressor(n_estimators=n_estimators, random_state=seed, n_jobs=1, **params).fit(features, target)


def model_tar_gz(model: Any, extra_files: dict[str, bytes] | None = None, *, pickled: bool = False) -> bytes:
    """``model.tar.gz`` bytes with the packed ``forest.npz`` (or, if ``pickled``, ``model.joblib``) at its root."""
    if pickled:
        import joblib

        files = {"model.joblib": _joblib_bytes(model, joblib), **(extra_files or {})}
    else:
        files = {"forest.npz": packed_bytes(model), **(extra_files or {})}
    return tar_gz(files)


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A ``.tar.gz`` holding ``files`` (name -> bytes) at its root, in the given order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def packed_bytes(model: Any) -> bytes:
    """``forest.npz`` of a fitted forest; six features are named as the serving schema names them."""
    import packed_forest
    from house_prices.schema import FEATURE_NAMES
    from packed_forest.pack import pack_forest

    count = model.n_features_in_
    names = list(FEATURE_NAMES) if count == len(FEATURE_NAMES) else [f"f{i}" for i in range(count)]
    buffer = io.BytesIO()
    packed_forest.write(buffer, pack_forest(model, names).arrays)
    return buffer.getvalue()


def _joblib_bytes(model: Any, joblib: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def write_program(directory: Path, source: str, name: str = "inference.py") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(source)
    return path


def sagemaker_runtime(endpoint_url: str, **config: Any) -> Any:
    """A real boto3 ``sagemaker-runtime`` client pointed at a local endpoint."""
    import boto3
    from botocore.config import Config

    config.setdefault("retries", {"mode": "standard", "total_max_attempts": 1})
    return boto3.client(
        "sagemaker-runtime", endpoint_url=endpoint_url, region_name="us-east-1", config=Config(**config)
    )


def metric_value(base_url: str, name: str, **labels: str) -> float:
    """One sample from the endpoint's ``/metrics`` (0.0 if the series does not exist yet)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items()):
                return float(sample.value)
    return 0.0


# A test program: model_fn honours options.json in the artifact (load delay, failure); other hooks default.
OPTIONS_PROGRAM = """
import json
import os
import time

from packed_forest import PackedForest


def model_fn(model_dir):
    path = os.path.join(model_dir, "options.json")
    options = json.load(open(path)) if os.path.exists(path) else {}
    time.sleep(options.get("load_delay", 0))
    if options.get("fail"):
        raise RuntimeError(options["fail"])
    return PackedForest.load(os.path.join(model_dir, "forest.npz"))
"""


def options_file(**options: Any) -> dict[str, bytes]:
    import json

    return {"options.json": json.dumps(options).encode()}


def bench_model(seed: int) -> tuple[Any, bytes]:
    """A seed-sized model (100 trees, min_samples_leaf=3, 600 rows) and its ``model.tar.gz`` for benchmarks.

    Returns the fitted model (its ``predict`` is the expected answer) and the artifact the project's
    ``training/inference.py`` serves.
    """
    model = fit_forest(seed=seed, n_rows=600, n_estimators=100, min_samples_leaf=3)
    return model, model_tar_gz(model)
