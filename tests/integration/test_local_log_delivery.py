"""local.log_delivery against a real moto server: the router's log lines in, gzipped JSON-lines objects out at
naming.KeyLayout's capture keys, as the template's subscription filter and Firehose stream deliver them."""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from house_prices import captures
from house_prices.naming import KeyLayout
from local.log_delivery import Delivery, LogTail, plan, pump, safe_offset
from local.moto_services import MotoServer, client, create_bucket
from local.template import REPO_ROOT, LocalResources, Template
from tests.router_doubles import LIVE, SequentialIds

REGION = "us-east-1"
RESOURCES = LocalResources()
(SPEC,) = plan(Template.load(), RESOURCES, "RouterFunction")
ROW = (2005, 3100, 4, 2.5, 1.1, 2)
# What else the router's sandboxes write to the same file: Powertools lines, EMF, the bridge's own text.
NOISE = [
    '{"level":"INFO","message":"Predicted","city":"Chicago_IL","houses":1,"captured":1}',
    '{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]},"HousesPerRequest":[1.0]}',
    "2026-12-07 02:43:25,571 local.sandboxes INFO sandbox 123 of RouterFunction ready in 900 ms (1/4)",
    '{"capture": "something-else", "city": "Chicago_IL", "time": "2026-12-07T00:00:00.000Z"}',
    "Traceback (most recent call last):",
]


def capture_line(city: str, count: int, request_id: str, house_ids: list[str | None] | None = None) -> str:
    (line,) = captures.capture_lines(
        city=city,
        version=LIVE,
        request_id=request_id,
        prediction_ids=SequentialIds.expected(city, count),
        rows=[ROW] * count,
        prices=[400000.0 + i for i in range(count)],
        house_ids=house_ids or [None] * count,
    )
    return line


class Clock:
    def __init__(self) -> None:
        self.now = 1_796_611_405.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with MotoServer() as server:
        create_bucket(server.url, REGION, SPEC.bucket)
        yield server.url


@pytest.fixture
def s3(moto_url: str) -> Any:
    s3 = client("s3", moto_url, REGION)
    listed = s3.list_objects_v2(Bucket=SPEC.bucket).get("Contents", [])
    for item in listed:
        s3.delete_object(Bucket=SPEC.bucket, Key=item["Key"])
    return s3


def objects(s3: Any) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=SPEC.bucket).get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=SPEC.bucket, Key=item["Key"])["Body"].read() for item in listed}


def put_with(s3: Any) -> Any:
    return lambda bucket, key, body: s3.put_object(Bucket=bucket, Key=key, Body=body)


def test_log_lines_become_objects_at_the_capture_keys(s3: Any, tmp_path: Path) -> None:
    # Given the router's log file with capture lines for two cities among other output, and a last
    # capture line still being written (no newline yet)
    log_file = tmp_path / "http-api.log"
    chicago, dallas = capture_line("Chicago_IL", 2, "r1", [None, "h-1"]), capture_line("Dallas_TX", 1, "r2")
    late = capture_line("Chicago_IL", 1, "r3")
    log_file.write_text("\n".join([NOISE[0], chicago, *NOISE[1:], dallas]) + "\n" + late[:40])
    clock = Clock()
    delivery = Delivery(SPEC, put_with(s3), clock=clock)
    tail = LogTail(log_file)
    # When the stand-in reads it, before and after the template's 300 s buffering interval
    pump(tail, [delivery])
    assert objects(s3) == {}
    clock.now += SPEC.buffer_seconds
    pump(tail, [delivery])
    # Then one object per partition, under KeyLayout's prefix for the city and the line's UTC date,
    # named as Firehose names objects, holding exactly the matching lines, gzipped, one per line
    delivered = objects(s3)
    layout = KeyLayout(RESOURCES.parameters.get("ArtifactPrefix", KeyLayout().prefix))
    by_prefix = {key.rsplit("/", 1)[0] + "/": key for key in delivered}
    assert set(by_prefix) == {
        layout.capture_prefix("Chicago_IL", "2026-12-07"),
        layout.capture_prefix("Dallas_TX", "2026-12-07"),
    }
    for key in delivered:
        name = key.rsplit("/", 1)[1]
        assert name.startswith("house-prices-local-CaptureDeliveryStream-1-")
        assert name.endswith(".jsonl.gz")
    chicago_key = by_prefix[layout.capture_prefix("Chicago_IL", "2026-12-07")]
    assert gzip.decompress(delivered[chicago_key]).decode() == chicago + "\n"
    read = list(captures.read_capture_object(delivered[chicago_key]))
    assert [(r.prediction_id, r.house_id) for r in read] == list(
        zip(SequentialIds.expected("Chicago_IL", 2), [None, "h-1"], strict=True)
    )
    # And the half-written line is neither delivered nor lost: it goes out once complete
    assert tail.offset == len(log_file.read_bytes()) - 40
    with log_file.open("a") as out:
        out.write(late[40:] + "\n")
    pump(tail, [delivery])
    clock.now += SPEC.buffer_seconds
    pump(tail, [delivery])
    assert len(objects(s3)) == 3


def test_a_partition_is_written_once_its_buffer_is_full(s3: Any, tmp_path: Path) -> None:
    # Given a buffer size this small (the template's is 128 MiB)
    small = replace(SPEC, buffer_bytes=2_000)
    log_file = tmp_path / "http-api.log"
    log_file.write_text("\n".join(capture_line("Chicago_IL", 3, f"r{i}") for i in range(4)) + "\n")
    # When the lines are read, long before the interval
    pump(LogTail(log_file), [Delivery(small, put_with(s3), clock=Clock())])
    # Then full buffers were written without waiting
    assert len(objects(s3)) >= 1


def test_a_line_without_partition_keys_goes_to_the_error_prefix(s3: Any, tmp_path: Path) -> None:
    # Given a line the filter matches but whose keys JQ cannot compute (no city)
    bad = '{"capture": "predictions", "format": 1, "time": "2026-12-07T02:43:25.571Z"}'
    log_file = tmp_path / "http-api.log"
    log_file.write_text(bad + "\n")
    delivery = Delivery(SPEC, put_with(s3), clock=Clock())
    pump(LogTail(log_file), [delivery])
    delivery.flush_all()
    # Then it is under the error prefix, as Firehose's processing-failed output, with the raw line
    ((key, body),) = objects(s3).items()
    assert key.startswith(KeyLayout().capture_errors_prefix + "processing-failed/")
    record = json.loads(gzip.decompress(body))
    assert record["errorCode"] == "DynamicPartitioning.MetadataExtractionFailed"
    assert base64.b64decode(record["rawData"]).decode() == bad


def test_while_s3_is_down_records_wait_and_the_checkpoint_stays_behind_them(tmp_path: Path) -> None:
    # Given an S3 that refuses writes
    calls: list[str] = []

    def refuse(bucket: str, key: str, body: bytes) -> None:
        calls.append(key)
        raise ConnectionError("moto is restarting")

    log_file = tmp_path / "http-api.log"
    log_file.write_text(NOISE[0] + "\n" + capture_line("Chicago_IL", 1, "r1") + "\n")
    clock = Clock()
    delivery = Delivery(SPEC, refuse, clock=clock)
    tail = LogTail(log_file)
    pump(tail, [delivery])
    # When the buffer falls due twice
    clock.now += SPEC.buffer_seconds
    pump(tail, [delivery])
    pump(tail, [delivery])
    # Then the write was tried and is kept for the next poll, and a restart would resume at that line
    assert len(calls) == 2
    assert safe_offset(tail, [delivery]) == len(NOISE[0]) + 1


def run_delivery(moto_url: str, tmp_path: Path, log_file: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_S3": moto_url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "layers" / "common"), str(REPO_ROOT)]),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.log_delivery",
            "--function",
            "RouterFunction",
            "--source",
            str(log_file),
            "--checkpoint",
            str(tmp_path / "offset"),
            "--buffer-seconds",
            "0.2",
            "--ready-file",
            str(tmp_path / "ready.json"),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(condition: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_process_delivers_within_its_interval_flushes_on_sigterm_and_resumes(
    moto_url: str, s3: Any, tmp_path: Path
) -> None:
    # Given the stand-in process on a log file, with a 0.2 s interval (StackConfig.capture_buffer_seconds)
    log_file = tmp_path / "http-api.log"
    log_file.write_text(capture_line("Chicago_IL", 1, "r1") + "\n")
    process = run_delivery(moto_url, tmp_path, log_file)
    try:
        wait_for(lambda: (tmp_path / "ready.json").is_file())
        # When a line is there, Then it reaches S3 within a few tenths of a second
        wait_for(lambda: len(objects(s3)) == 1)
        # When another line arrives and the process is stopped at once, Then it is written before exiting
        with log_file.open("a") as out:
            out.write(capture_line("Dallas_TX", 1, "r2") + "\n")
        time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, process.stderr.read() if process.stderr else ""
        wait_for(lambda: len(objects(s3)) == 2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # And a restarted process resumes after what it delivered: a new line is delivered, nothing twice
    with log_file.open("a") as out:
        out.write(capture_line("Phoenix_AZ", 1, "r3") + "\n")
    restarted = run_delivery(moto_url, tmp_path, log_file)
    try:
        wait_for(lambda: len(objects(s3)) == 3)
        time.sleep(0.5)
        ids = [p.prediction_id for body in objects(s3).values() for p in captures.read_capture_object(body)]
        assert sorted(ids) == sorted(
            SequentialIds.expected(city, 1)[0] for city in ("Chicago_IL", "Dallas_TX", "Phoenix_AZ")
        )
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(15)
