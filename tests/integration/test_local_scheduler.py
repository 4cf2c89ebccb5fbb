"""local/scheduler.py as the stack runs it: a child process hosting the template's RolloutFunction (its environment
from template.yaml), its ticks reaching the real handler, which decides on the registry on a moto server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from house_prices.registry import ModelRegistry
from local.lambda_runtime import LOCAL_CREDENTIALS
from local.moto_services import MotoServer, client, create_table
from local.scheduler import TICKS_PATH, main, request_tick
from local.template import REPO_ROOT, LocalResources, Template
from tests.model_versions import model_version
from tests.rollout_doubles import CANDIDATE, DURATION, LIVE, STARTED_AT

REGION = "us-east-1"
RESOURCES = LocalResources(stack_name="house-prices-local", region=REGION)
CITY = "Chicago_IL"


@dataclass
class Child:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    registry: ModelRegistry

    def ticks_logged(self) -> int:
        return sum("RolloutFunction EveryMinute at" in line for line in self.log.read_text().splitlines())


def start_scheduler(moto_url: str, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    ready, log = tmp_path / "ready.json", tmp_path / "scheduler.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **LOCAL_CREDENTIALS,
        "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    resources = json.dumps({"stack_name": RESOURCES.stack_name, "region": REGION})
    command = [
        sys.executable,
        "-m",
        "local.scheduler",
        "serve",
        "--function",
        "RolloutFunction",
        "--resources",
        resources,
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--ready-file", str(ready), *extra],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    facts = json.loads(ready.read_text())
    assert facts["function"] == "RolloutFunction"
    assert facts["schedules"] == {"EveryMinute": "rate(1 minute)"}
    return process, facts["url"], log


@pytest.fixture
def moto() -> Iterator[tuple[str, ModelRegistry]]:
    """The template's registry and quality tables on a moto server, Chicago_IL with a shadow rollout running."""
    with MotoServer() as server:
        urllib.request.urlopen(urllib.request.Request(f"{server.url}/moto-api/reset", method="POST"), timeout=10)
        dynamodb = client("dynamodb", server.url, REGION)
        function = Template.load().function("RolloutFunction", RESOURCES)
        for variable in ("REGISTRY_TABLE", "QUALITY_TABLE"):
            create_table(dynamodb, function.environment[variable])
        registry = ModelRegistry(dynamodb, function.environment["REGISTRY_TABLE"])
        for version in (LIVE, CANDIDATE):
            registry.record_version(model_version(CITY, version))
        registry.promote(CITY, LIVE)
        registry.start_rollout(CITY, CANDIDATE, "shadow", 1000, {}, DURATION.total_seconds(), "test", now=STARTED_AT)
        yield server.url, registry


@pytest.fixture
def paused(moto: tuple[str, ModelRegistry], tmp_path: Path) -> Iterator[Child]:
    url, registry = moto
    process, scheduler_url, log = start_scheduler(url, tmp_path, "--paused")
    yield Child(process, scheduler_url, log, registry)
    process.terminate()
    process.wait(timeout=30)


def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + TICKS_PATH, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_tick_at_a_chosen_time_reaches_the_function(paused: Child) -> None:
    # Given the decider waiting in its own process, paused (no periodic ticks)
    status, answer = post(paused.url, {"time": (STARTED_AT + timedelta(days=1)).isoformat()})
    # When a tick is sent a day into the rollout, the rollout waits (no evidence yet)
    assert status == 200, answer
    assert answer["event"]["detail-type"] == "Scheduled Event"
    assert answer["event"]["time"] == "2026-12-02T05:00:00Z"
    assert answer["event"]["resources"] == [
        "arn:aws:events:us-east-1:123456789012:rule/house-prices-local-RolloutFunctionEveryMinute"
    ]
    assert answer["result"]["waiting"] == 1
    # When the simulated clock reaches the deadline, the function times the rollout out in the registry
    status, answer = post(paused.url, {"time": "2026-12-15T05:00:00Z", "event": "EveryMinute"})
    assert status == 200, answer
    assert answer["result"]["timed_out"] == 1
    assert paused.registry.live_model(CITY).rollout is None
    assert paused.registry.version(CITY, CANDIDATE).status == "standby"
    assert [e.at for e in paused.registry.rollout_history(CITY) if e.action == "timed_out"] == [
        "2026-12-15T05:00:00+00:00"
    ]
    # And a paused scheduler never ticked by itself
    assert paused.ticks_logged() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"time": "next week"}, "time"),
        ({"time": "2026-12-02T05:00:00"}, "time"),
        ({"event": "Nightly"}, "event"),
        ([1], "body"),
    ],
)
def test_a_bad_tick_is_refused_naming_the_field(paused: Child, body: Any, field: str) -> None:
    status, answer = post(paused.url, body)
    assert status == 400
    assert answer["field"] == field
    assert paused.ticks_logged() == 0


def test_the_tick_command_finds_the_scheduler_in_the_stack_file(
    paused: Child, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack_file = tmp_path / "stack.json"
    stack_file.write_text(json.dumps({"schedulers": {"RolloutFunction": paused.url}}))
    assert main(["tick", "--time", "2026-12-02T05:00:00Z", "--stack-file", str(stack_file)]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["waiting"] == 1
    assert main(["tick", "--function", "Nope", "--stack-file", str(stack_file)]) == 2
    assert main(["tick", "--stack-file", str(tmp_path / "none.json")]) == 2


def test_a_failing_invocation_answers_502_with_the_error(paused: Child) -> None:
    # Given the registry table gone, the handler raises: the tick says so, and the scheduler keeps serving
    dynamodb = client("dynamodb", paused.registry._db.meta.endpoint_url, REGION)
    dynamodb.delete_table(TableName=paused.registry._table)
    status, answer = post(paused.url, {"time": "2026-12-02T05:00:00Z"})
    assert status == 502
    assert "DependencyFailure" in answer["error"]
    with pytest.raises(RuntimeError, match="502"):
        request_tick(paused.url, "2026-12-02T05:00:00Z")


def test_the_schedule_fires_by_itself_every_period(moto: tuple[str, ModelRegistry], tmp_path: Path) -> None:
    # Given the scheduler with its period shortened to a quarter second
    url, registry = moto
    process, _, log = start_scheduler(url, tmp_path, "--period-seconds", "0.25")
    child = Child(process, "", log, registry)
    try:
        # Then it invokes the function again and again, at the current time (the rollout keeps waiting)
        deadline = time.monotonic() + 30
        while child.ticks_logged() < 3:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert registry.live_model(CITY).rollout is not None
    finally:
        process.terminate()
        process.wait(timeout=30)
