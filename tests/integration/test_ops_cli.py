"""The operator CLI (`python -m ops`) against S3 and DynamoDB from moto (mock_aws)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ops.cli import main
from tests.integration.model_sync_harness import (
    BUCKET,
    CITY,
    LAYOUT,
    Stack,
    invoke,
    only,
    s3_put_event,
)
from tests.unit.test_artifacts_inspection import add_file, build_artifact, realistic_metrics


@pytest.fixture
def aws(stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Stack:
    monkeypatch.chdir(tmp_path)  # never pick up a developer's .local/stack.json
    return stack


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(["--json", *argv])
    captured = capsys.readouterr()
    if code == 0:
        return code, json.loads(captured.out)
    return code, json.loads(captured.err.strip().splitlines()[-1])  # after any log lines


def artifact_file(tmp_path: Path, name: str, ae_p50: float = 20_000, **kwargs: Any) -> Path:
    path = tmp_path / f"{name}.tar.gz"
    path.write_bytes(build_artifact(realistic_metrics(ae_p50), **kwargs))
    return path


def test_publish_uploads_a_training_output_that_the_trigger_syncs(
    aws: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an artifact on disk, When published with a job name
    code, published = run(capsys, "publish", CITY, str(artifact_file(tmp_path, "m")), "--job", "manual-1")
    # Then it lands at the training-output key, and the S3 event promotes it
    assert code == 0
    assert published["key"] == LAYOUT.training_output_key(CITY, "manual-1")
    assert only(invoke(s3_put_event(published["key"])))["action"] == "promoted"
    capsys.readouterr()  # the handler's own logs
    code, versions = run(capsys, "versions", CITY)
    assert code == 0
    assert [(v["status"], v["ae_p50"]) for v in versions] == [("live", 20_000)]


def test_sync_without_trigger_then_rollback_and_roll_forward(
    aws: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two versions synced directly by the CLI, the second better and live
    code, first = run(capsys, "sync", CITY, str(artifact_file(tmp_path, "a", 20_000)), "--job", "a")
    assert (code, first["action"]) == (0, "promoted")
    code, second = run(capsys, "sync", CITY, str(artifact_file(tmp_path, "b", 18_000)), "--job", "b")
    assert (code, second["action"]) == (0, "promoted")
    code, cities = run(capsys, "cities")
    assert [(c["city"], c["version"]) for c in cities] == [(CITY, second["version"])]
    # When the operator rolls back to the first version
    code, rolled = run(capsys, "promote", CITY, first["version"])
    # Then it is live again, the second is standby, and the reason records who did it
    assert code == 0
    assert (rolled["version"], rolled["previous_version"]) == (first["version"], second["version"])
    assert aws.registry.live_model(CITY).version == first["version"]
    code, versions = run(capsys, "versions", CITY)
    by_version = {v["version"]: v for v in versions}
    assert by_version[second["version"]]["status"] == "standby"
    assert by_version[first["version"]]["reason"] == f"promoted by operator (was {second['version']})"
    # And a stale optimistic check is refused; a correct one rolls forward
    code, error = run(capsys, "promote", CITY, second["version"], "--expected-live", second["version"])
    assert code == 1
    assert error["error"] == "PromotionRefused"
    code, _ = run(capsys, "promote", CITY, second["version"], "--expected-live", first["version"])
    assert code == 0
    assert aws.registry.live_model(CITY).version == second["version"]


def test_sync_applies_the_gate(aws: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "sync", CITY, str(artifact_file(tmp_path, "a", 20_000)), "--job", "a")
    code, worse = run(capsys, "sync", CITY, str(artifact_file(tmp_path, "b", 30_000)), "--job", "b")
    assert (code, worse["action"]) == (0, "standby")
    code, forced = run(
        capsys, "sync", CITY, str(artifact_file(tmp_path, "c", 30_000)), "--job", "c", "--gate", "always"
    )
    assert (code, forced["action"]) == (0, "promoted")


def test_publish_refuses_an_invalid_artifact_before_uploading(
    aws: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = artifact_file(tmp_path, "evil", extra=lambda archive: add_file(archive, "/etc/passwd", b"x"))
    code, error = run(capsys, "publish", CITY, str(path))
    assert code == 1
    assert error["error"] == "InvalidArtifact"
    assert "absolute path" in error["message"]
    uploaded = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=LAYOUT.training_output_prefix)
    assert uploaded.get("KeyCount") == 0


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (("versions", "Nowhere_XX"), "UnknownCity"),
        (("versions", "../etc"), "InvalidCityName"),
        (("promote", CITY, "20260101T000000Z-0123abcd"), "UnknownVersion"),
        (("promote", CITY, "latest"), "InvalidVersion"),
    ],
)
def test_bad_arguments_give_a_clear_error(
    aws: Stack, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], problem: str
) -> None:
    code, error = run(capsys, *argv)
    assert code == 1
    assert error["error"] == problem


def test_table_output_lists_live_models(aws: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "sync", CITY, str(artifact_file(tmp_path, "a")), "--job", "a")
    assert main(["cities"]) == 0
    out = capsys.readouterr().out
    assert "Live models" in out
    assert CITY in out
