"""Fault suite: the whole local stack under faults, each case asserting that nothing is lost.

One stack for the module (state journaled in a temporary directory, fast restart policy, the router's
live-version cache off, model-sync's unpacked-size limit lowered to 32 MiB so a bomb stays cheap).
Processes are killed with real signals; S3, SQS and DynamoDB state is compared before and after.
The scenarios and what each proves are listed in docs/reliability.md.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from house_prices import schema
from house_prices.naming import KeyLayout
from house_prices.registry import ModelRegistry
from local.demo import wait_for_live
from local.process import RestartPolicy
from local.stack import LocalStack, StackConfig
from tests.e2e.stack_harness import QUIET, queue_depth, s3_event, train, train_until_live, wait_drained

pytestmark = pytest.mark.slow

CITIES = ("Chicago_IL", "Dallas_TX")
MAX_UNPACKED = 32 * 1024 * 1024
HOUSE = schema.EXAMPLE_HOUSE


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("faults"),
        write_stack_file=False,
        function_env={
            "RouterFunction": {"LIVE_MODEL_CACHE_SECONDS": "0"},
            "ModelSyncFunction": {"MAX_UNPACKED_BYTES": str(MAX_UNPACKED)},
        },
        dispatcher_backoff_base_seconds=0,
        # An event held by a killed invoker comes back after 5 s instead of the function's timeout.
        event_visibility_timeout_seconds=5,
        restart_policy=RestartPolicy(backoff_base_seconds=0.2, max_restarts=5, window_seconds=60),
        api_max_concurrency=8,
    )
    with LocalStack(config) as running:
        yield running


@pytest.fixture(scope="module")
def registry(stack: LocalStack) -> ModelRegistry:
    return ModelRegistry(stack.client("dynamodb"), stack.info.registry_table)


@pytest.fixture(scope="module")
def trained(stack: LocalStack, registry: ModelRegistry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return train_until_live(stack, registry, CITIES, tmp_path_factory.mktemp("training"), timeout=90)


# --- helpers -----------------------------------------------------------------------------------


def state(stack: LocalStack, registry: ModelRegistry) -> dict[str, Any]:
    """Everything that must survive a fault: every S3 object, every registry version, the failure queue."""
    s3 = stack.client("s3")
    objects = s3.list_objects_v2(Bucket=stack.info.bucket).get("Contents", [])
    return {
        # LastModified too: model-sync names versions after it, so a restore must keep it
        "objects": sorted((o["Key"], o["ETag"], o["Size"], o["LastModified"]) for o in objects),
        "registry": {city: [v.as_dict() for v in registry.versions(city)] for city in CITIES},
        "live": {city: registry.live_model(city) for city in CITIES},
        "failed": queue_depth(stack, stack.info.queues["ModelSyncFunction"]["on_failure_url"]),
    }


def predict(stack: LocalStack, city: str, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{stack.info.api_url}/locations/{city}/predictions", json=HOUSE, timeout=timeout)


def wait_restarted(stack: LocalStack, name: str, old_pid: int, timeout: float = 60) -> None:
    assert stack.supervisor is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert stack.failure is None, stack.failure
        child = stack.child(name)
        if child.pid != old_pid and child.exit_code() is None and stack.info.pids.get(name) == child.pid:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} was not restarted within {timeout}s")


class Load:
    """Predictions from a few threads until stopped; records every status code seen."""

    def __init__(self, stack: LocalStack, cities: tuple[str, ...] = CITIES, threads: int = 4) -> None:
        self._stack, self._cities, self._threads = stack, cities, threads
        self._stop = threading.Event()
        self.statuses: list[int] = []
        self.bodies: list[dict[str, Any]] = []
        self._pool = ThreadPoolExecutor(threads)

    def __enter__(self) -> Load:
        for n in range(self._threads):
            self._pool.submit(self._run, self._cities[n % len(self._cities)])
        return self

    def _run(self, city: str) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                response = client.post(f"{self._stack.info.api_url}/locations/{city}/predictions", json=HOUSE)
                self.statuses.append(response.status_code)
                self.bodies.append(response.json())

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True)


def assert_answers_again(stack: LocalStack, n: int = 10) -> None:
    for city in CITIES:
        for _ in range(n):
            response = predict(stack, city)
            assert response.status_code == 200, response.text


# --- process faults ----------------------------------------------------------------------------


def test_moto_killed_under_load_restarts_with_every_object_item_and_message(
    stack: LocalStack, registry: ModelRegistry, trained: dict[str, Any]
) -> None:
    # Given a trained stack under prediction load, and a snapshot of all its state
    before = state(stack, registry)
    others = {name: pid for name, pid in stack.info.pids.items() if name != "moto"}
    moto = stack.child("moto")
    with Load(stack) as load:
        time.sleep(0.5)
        # When moto (S3, SQS and DynamoDB) is killed with SIGKILL
        os.kill(moto.pid, signal.SIGKILL)
        old_pid = moto.pid
        wait_restarted(stack, "moto", old_pid)
        time.sleep(1.0)
    # Then the supervisor restarted it on the same URL, without touching the other children
    assert {name: pid for name, pid in stack.info.pids.items() if name != "moto"} == others
    # and every object, registry item and queued record is back
    assert state(stack, registry) == before
    # and clients saw only successes or retryable JSON errors, never a connection reset into a crash
    assert set(load.statuses) <= {200, 502, 503, 504}, sorted(set(load.statuses))
    assert load.statuses.count(200) > 0
    assert_answers_again(stack)


def test_endpoint_killed_under_load_restarts_on_the_same_url(
    stack: LocalStack, registry: ModelRegistry, trained: dict[str, Any]
) -> None:
    before = state(stack, registry)
    endpoint = stack.child("endpoint")
    url = stack.info.endpoint_url
    with Load(stack) as load:
        time.sleep(0.5)
        # When the endpoint's process group leader is killed with SIGKILL
        old_pid = endpoint.pid
        os.kill(old_pid, signal.SIGKILL)
        wait_restarted(stack, "endpoint", old_pid)
        time.sleep(1.0)
    # Then it is back on the same URL, state is intact and requests succeed again
    assert stack.info.endpoint_url == url
    assert state(stack, registry) == before
    assert set(load.statuses) <= {200, 502, 503, 504}, sorted(set(load.statuses))
    assert_answers_again(stack)
    # and its model cache lives in the run's own directory, never in /tmp
    cache = Path(stack.config.state_dir) / "run" / stack.run_id / "endpoint-cache"
    assert any(cache.rglob("*"))


def test_dispatcher_killed_mid_stream_loses_no_event(
    stack: LocalStack, registry: ModelRegistry, trained: dict[str, Any]
) -> None:
    # Given duplicate events for every trained city queued for model-sync
    queue_url = stack.info.queues["ModelSyncFunction"]["queue_url"]
    before = state(stack, registry)
    sqs = stack.client("sqs")
    for city in CITIES:
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(s3_event(stack, trained["keys"][city])))
    # When the dispatcher (model-sync's invoker) is killed while they are handled
    dispatcher = stack.child("dispatcher-ModelSyncFunction")
    old_pid = dispatcher.pid
    os.kill(old_pid, signal.SIGKILL)
    wait_restarted(stack, "dispatcher-ModelSyncFunction", old_pid)
    # Then the restarted invoker finishes them (at-least-once), and as duplicates they change nothing
    wait_drained(stack, timeout=90)
    assert state(stack, registry) == before


def test_s3_frozen_cold_load_fails_fast_and_retryably_then_recovers(
    stack: LocalStack, registry: ModelRegistry, trained: dict[str, Any]
) -> None:
    # Given a model the endpoint has not loaded (a TargetModel name no request has used)
    live = trained["live"][CITIES[1]]
    runtime = stack.client(
        "sagemaker-runtime", config=Config(retries={"total_max_attempts": 1}, read_timeout=30, connect_timeout=5)
    )
    csv = schema.rows_to_csv([[HOUSE[name] for name in schema.FEATURE_NAMES]])
    cold_target = live.target_model

    def invoke() -> Any:
        return runtime.invoke_endpoint(
            EndpointName=stack.info.endpoint_name, TargetModel=cold_target, ContentType="text/csv", Body=csv
        )

    # Evict it first by restarting the endpoint (a fresh process has nothing loaded)
    endpoint = stack.child("endpoint")
    old_pid = endpoint.pid
    os.kill(old_pid, signal.SIGKILL)
    wait_restarted(stack, "endpoint", old_pid)
    # and drop its disk cache too, so the model must come from S3
    models = Path(stack.config.state_dir) / "run" / stack.run_id / "endpoint-cache" / "models"
    for model_dir in models.iterdir():
        shutil.rmtree(model_dir)
    moto = stack.child("moto")
    # When S3 is frozen (SIGSTOP) and a cold request arrives
    os.kill(moto.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(ClientError) as caught:
            invoke()
        elapsed = time.monotonic() - started
    finally:
        os.kill(moto.pid, signal.SIGCONT)
    # Then it fails within seconds (bounded S3 timeouts), with an error a client may retry
    assert elapsed < 8, f"cold request took {elapsed:.1f}s with S3 frozen"
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] in {503, 504}, error
    # And once S3 is back the same request succeeds, and the stack lost nothing
    assert invoke()["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert stack.failure is None


# --- events ------------------------------------------------------------------------------------


def test_duplicate_and_out_of_order_events_leave_the_registry_monotonic(
    stack: LocalStack, registry: ModelRegistry, trained: dict[str, Any], tmp_path: Path
) -> None:
    # Given a city retrained so that a newer version is live
    city = CITIES[0]
    old_key = trained["keys"][city]
    old_live = registry.live_model(city)
    new_key = train(stack, (city,), tmp_path, houses_per_city=2000)[city]
    newest = wait_for_live(registry, (city,), QUIET, timeout=90, newer_than={city: old_live.version})[city]
    wait_drained(stack)
    before = state(stack, registry)
    # When the old event arrives again, late (out of order), followed by duplicates of the new one
    sqs = stack.client("sqs")
    queue_url = stack.info.queues["ModelSyncFunction"]["queue_url"]
    for key in (old_key, new_key, new_key, old_key):
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(s3_event(stack, key)))
    wait_drained(stack)
    # Then nothing changed: the newest version stays live, no object or version was added or lost
    assert registry.live_model(city).version == newest.version
    assert state(stack, registry) == before


def _tar(members: Callable[[tarfile.TarFile], None]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        members(archive)
    return gzip.compress(raw.getvalue(), mtime=0)


def _member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _special(archive: tarfile.TarFile, name: str, kind: bytes, link: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    archive.addfile(info)


def _valid_members(archive: tarfile.TarFile) -> None:
    _member(archive, "metrics.json", json.dumps({"validation": {"ae_p50": 1.0}}).encode())


def _declared_oversize() -> bytes:
    """A member header declaring more than the limit; only its first block of data follows."""
    valid = io.BytesIO()
    with tarfile.open(fileobj=valid, mode="w") as archive:
        _valid_members(archive)
    header = tarfile.TarInfo("big.bin")
    header.size = MAX_UNPACKED + 1
    body = valid.getvalue().rstrip(b"\0")
    body += b"\0" * (-len(body) % 512)
    return gzip.compress(body + header.tobuf() + b"\0" * 512, mtime=0)


def _hostile() -> dict[str, bytes]:
    good = _tar(_valid_members)
    zeros = b"\0" * (MAX_UNPACKED + 1024 * 1024)
    return {
        "corrupted": good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:],
        "truncated": good[: len(good) // 2],
        "traversal": _tar(lambda a: (_valid_members(a), _member(a, "../../evil.py", b"x"))),
        "symlink": _tar(lambda a: (_valid_members(a), _special(a, "model", tarfile.SYMTYPE, "/etc/passwd"))),
        "oversized": _declared_oversize(),
        "bomb": _tar(lambda a: (_valid_members(a), _member(a, "zeros.bin", zeros))),
    }


@pytest.mark.parametrize("kind", ["corrupted", "truncated", "traversal", "symlink", "oversized", "bomb"])
def test_hostile_artifact_is_rejected_with_a_reason_and_the_live_model_keeps_serving(
    stack: LocalStack, registry: ModelRegistry, trained: dict[str, Any], kind: str
) -> None:
    city = CITIES[1]
    wait_drained(stack)
    live_before = registry.live_model(city)
    mme_prefix = KeyLayout(stack.info.prefix).mme_prefix
    s3 = stack.client("s3")
    mme_before = {o["Key"] for o in s3.list_objects_v2(Bucket=stack.info.bucket, Prefix=mme_prefix)["Contents"]}
    # Given a hostile training output uploaded where training jobs write
    key = KeyLayout(stack.info.prefix).training_output_key(city, f"hostile-{kind}-{time.time_ns()}")
    try:
        s3.put_object(Bucket=stack.info.bucket, Key=key, Body=_hostile()[kind])
    except ClientError as error:  # an invalid gzip that S3 refuses is also fine: nothing to sync
        pytest.fail(f"S3 refused the upload: {error}")
    # When model-sync has handled its event
    wait_drained(stack)
    # Then the live version and the served artifacts are unchanged, and it still answers
    assert registry.live_model(city) == live_before
    after = {o["Key"] for o in s3.list_objects_v2(Bucket=stack.info.bucket, Prefix=mme_prefix)["Contents"]}
    assert after == mme_before
    assert predict(stack, city).status_code == 200
    # and the rejection is recorded with its reason (not a failure: nothing to retry)
    rejected = [v for v in registry.versions(city) if v.source_key == key]
    assert len(rejected) <= 1
    if rejected:
        assert rejected[0].status == "rejected"
        assert rejected[0].reason
    assert queue_depth(stack, stack.info.queues["ModelSyncFunction"]["on_failure_url"]) == 0


def test_100_concurrent_cold_requests_load_the_model_once(
    stack: LocalStack, registry: ModelRegistry, trained: dict[str, Any]
) -> None:
    # Given a version the endpoint has never loaded (a fresh endpoint process)
    endpoint = stack.child("endpoint")
    old_pid = endpoint.pid
    os.kill(old_pid, signal.SIGKILL)
    wait_restarted(stack, "endpoint", old_pid)

    # When 100 requests for it arrive at once, from clients that honour Retry-After once (on a busy
    # 2-core machine the registry or the endpoint may shed load with a retryable 503)
    def client(_: int) -> httpx.Response:
        response = predict(stack, CITIES[0], timeout=60)
        if response.status_code == 503:
            time.sleep(min(2.0, float(response.headers.get("retry-after", "1"))))
            response = predict(stack, CITIES[0], timeout=60)
        return response

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(client, range(100)))
    # Then all succeed with the same price, and model_fn ran once
    assert [r.status_code for r in responses] == [200] * 100, [r.text for r in responses if r.status_code != 200]
    assert len({json.dumps([p["price"] for p in r.json()["predictions"]]) for r in responses}) == 1
    metrics = httpx.get(f"{stack.info.endpoint_url}/metrics", timeout=10).text
    loads = [line for line in metrics.splitlines() if line.startswith("endpoint_model_loads_total")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in loads) == 1, loads


# --- across runs -------------------------------------------------------------------------------


def test_state_persists_across_runs_logs_are_kept_and_fresh_starts_empty(tmp_path: Path) -> None:
    config = StackConfig(state_dir=tmp_path, write_stack_file=False)
    item = {"city": {"S": "Chicago_IL"}, "record": {"S": "VERSION#persisted"}}
    # Given a stack run that stored an object, a registry item and a failed-event record
    with LocalStack(config) as first:
        first.client("s3").put_object(Bucket=first.info.bucket, Key="kept/object.txt", Body=b"kept")
        first.client("dynamodb").put_item(TableName=first.info.registry_table, Item=item)
        failures = first.info.queues["ModelSyncFunction"]["on_failure_url"]
        first.client("sqs").send_message(QueueUrl=failures, MessageBody='{"kept": true}')
        # every child's scratch space is inside this run's directory, not /tmp
        environ = Path(f"/proc/{first.child('moto').pid}/environ").read_bytes().split(b"\0")
        assert f"TMPDIR={tmp_path}/run/{first.run_id}/tmp".encode() in environ
    assert list((tmp_path / "run").iterdir()) == []  # scratch removed when the stack stops
    # When the next run starts on the same state directory (make up again)
    with LocalStack(config) as second:
        # Then all of it is still there
        body = second.client("s3").get_object(Bucket=second.info.bucket, Key="kept/object.txt")["Body"].read()
        assert body == b"kept"
        key = {"city": item["city"], "record": item["record"]}
        assert second.client("dynamodb").get_item(TableName=second.info.registry_table, Key=key)["Item"] == item
        failures = second.info.queues["ModelSyncFunction"]["on_failure_url"]
        messages = second.client("sqs").receive_message(QueueUrl=failures, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in messages] == ['{"kept": true}']
    # And a fresh run (make up FRESH=1) starts empty
    with LocalStack(replace(config, fresh=True)) as fresh:
        listing = fresh.client("s3").list_objects_v2(Bucket=fresh.info.bucket)
        assert listing.get("KeyCount", 0) == 0
    # And the logs of all three runs are kept
    runs = [p for p in (tmp_path / "logs").iterdir() if p.name != "latest"]
    assert len(runs) == 3
    assert all((run / "moto.log").is_file() for run in runs)
