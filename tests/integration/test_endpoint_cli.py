"""``python -m endpoint`` as a real process: env/CLI settings, startup line, boto3 via env, clean shutdown."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from endpoint.sockets import listening_socket
from testkit.aws import moto_s3, s3_client
from testkit.models import fit_forest, model_tar_gz
from testkit.servers import startup_url

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BUCKET = "endpoint-cli-tests"
PREFIX = "DEMO_MME_SCIKIT_V1/multi_model_artifacts/"
TARGET = "Houston_TX.20261125T040000Z-1a2b3c4d.tar.gz"


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with moto_s3(BUCKET) as url:
        s3_client(url).put_object(Bucket=BUCKET, Key=PREFIX + TARGET, Body=model_tar_gz(fit_forest(seed=11)))
        yield url


def endpoint_env(s3_url: str, **variables: str) -> dict[str, str]:
    """This process's environment, plus the endpoint's model data on the module's moto bucket."""
    return {**os.environ, "MODEL_DATA_URL": f"s3://{BUCKET}/{PREFIX}", "AWS_ENDPOINT_URL_S3": s3_url, **variables}


@dataclass
class Served:
    """A ``python -m endpoint`` child: its URL once it announced itself, its output once it stopped."""

    process: subprocess.Popen[str]
    url: str = ""
    output: str = ""


@contextlib.contextmanager
def serving(
    env: dict[str, str], *args: str, stop_signal: int = signal.SIGTERM, pass_fds: tuple[int, ...] = ()
) -> Iterator[Served]:
    """Run ``python -m endpoint *args`` until it announces its URL; on leaving, stop it with ``stop_signal``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "endpoint", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        pass_fds=pass_fds,
    )
    served = Served(process)
    try:
        served.url = startup_url(process)
        yield served
    finally:
        process.send_signal(stop_signal)
        served.output, _ = process.communicate(timeout=30)


def assert_pings(url: str) -> None:
    with urllib.request.urlopen(f"{url}/ping", timeout=10) as response:
        assert response.status == 200


def child_pids(pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()


def run(env: dict[str, str], *args: str, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``python -m endpoint *args`` run to its exit (for settings it refuses), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "endpoint", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        pass_fds=pass_fds,
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_boto3_and_stops_cleanly(s3_url: str, stop_signal: signal.Signals) -> None:
    # Given settings from the environment (S3 via AWS_ENDPOINT_URL_S3) and a free port from --port 0
    env = endpoint_env(s3_url, ENDPOINT_NAME="cli-endpoint")
    with serving(env, "--port", "0", "--max-models", "2", stop_signal=stop_signal) as endpoint:
        # When boto3 finds the endpoint through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME
        os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = endpoint.url
        try:
            client = boto3.client("sagemaker-runtime", region_name="us-east-1")
        finally:
            del os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"]
        response = client.invoke_endpoint(
            EndpointName="cli-endpoint",
            TargetModel=TARGET,
            ContentType="text/csv",
            Body="2000,3000,3,2.5,1.0,2\n1990,2500,2,2.0,0.5,1",
        )
        # Then the project's inference.py (the default program) answered with one price per row
        prices = json.loads(response["Body"].read())
        assert len(prices) == 2
        assert all(isinstance(price, float) for price in prices)
    # And a signal stops it cleanly
    assert endpoint.process.returncode == 0, endpoint.output
    assert "stopped" in endpoint.output


def test_cli_refuses_bad_settings() -> None:
    env = {key: value for key, value in os.environ.items() if key != "MODEL_DATA_URL"}
    result = run(env, "--port", "0")
    assert result.returncode == 2
    assert "model data URL is required" in result.stderr


def test_cli_serves_on_a_socket_inherited_from_its_parent(s3_url: str) -> None:
    # Given a listening socket bound by the parent before the endpoint exists (as the local stack does)
    parent_socket = listening_socket("127.0.0.1", 0)
    port = parent_socket.getsockname()[1]
    fd = parent_socket.fileno()
    # When it starts on that descriptor, and the parent closes its copy
    with serving(endpoint_env(s3_url), "--fd", str(fd), "--port", "1", pass_fds=(fd,)) as endpoint:
        parent_socket.close()
        # Then it announces and serves the inherited port, not the --port it was also given
        assert endpoint.url == f"http://127.0.0.1:{port}"
        assert_pings(endpoint.url)
    assert endpoint.process.returncode == 0, endpoint.output


def test_cli_refuses_a_descriptor_that_is_not_a_listening_socket(tmp_path: Path) -> None:
    # Given a file descriptor that is a regular file
    with (tmp_path / "not-a-socket").open("w") as regular_file:
        fd = regular_file.fileno()
        # When the endpoint is told to serve on it
        result = run({**os.environ, "MODEL_DATA_URL": "s3://bucket/prefix/"}, "--fd", str(fd), pass_fds=(fd,))
    # Then it exits with a usage error naming the descriptor
    assert result.returncode == 2
    assert f"cannot listen on file descriptor {fd}" in result.stderr


def test_cli_workers_share_one_disk_cache_restart_a_dead_worker_and_stop_together(s3_url: str, tmp_path: Path) -> None:
    # Given two worker processes (settings from the environment) on one cache directory
    cache = tmp_path / "cache"
    env = endpoint_env(s3_url, ENDPOINT_WORKERS="2", ENDPOINT_PRELOAD_MODULES="")
    with serving(env, "--port", "0", "--cache-dir", str(cache), "--log-level", "info") as endpoint:
        url, process = endpoint.url, endpoint.process
        # When requests arrive on fresh connections (so both workers get some)
        for _ in range(12):
            client = boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1")
            response = client.invoke_endpoint(
                EndpointName="local-mme", TargetModel=TARGET, ContentType="text/csv", Body="2000,3000,3,2.5,1.0,2"
            )
            assert len(json.loads(response["Body"].read())) == 1
        # Then the model is on disk once, whichever worker fetched it
        assert len([path for path in (cache / "models").iterdir() if path.is_dir()]) == 1
        # And a worker killed outright is replaced, and the endpoint keeps answering
        workers = child_pids(process.pid)
        assert len(workers) == 2
        os.kill(int(workers[0]), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = child_pids(process.pid)
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the killed worker was not replaced")
        assert_pings(url)
    # And SIGTERM stops the supervisor and both workers with exit 0
    assert process.returncode == 0, endpoint.output
    assert "died with status" in endpoint.output
    assert subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True).returncode == 1
