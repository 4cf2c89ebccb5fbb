"""The operator CLI (`python -m ops`) against S3 and DynamoDB from moto (mock_aws)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.moto_services import create_table
from ops import cli
from ops.cli import build_parser, main
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


# --- global options anywhere, --region and --profile ---------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("--json", "cities"),
        ("cities", "--json"),
        ("--table", "missing-table", "cities", "--json", "--table", "house-prices-registry"),
        ("cities", "--json", "--stack-file", "nowhere.json", "--bucket", "b"),
    ],
)
def test_global_options_work_before_and_after_the_command(
    aws: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    # Given a live model
    run(capsys, "sync", CITY, str(artifact_file(tmp_path, "a")), "--job", "a")
    (tmp_path / "nowhere.json").write_text("{}")
    # When a global option is given after the command (the later of two wins)
    code = main(list(argv))
    # Then it takes effect exactly as before the command
    assert code == 0, capsys.readouterr().err
    assert [row["city"] for row in json.loads(capsys.readouterr().out)] == [CITY]


def test_region_after_the_command_reaches_every_aws_call(aws: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the registry table in us-east-1 only
    assert main(["cities", "--json", "--region", "us-east-1"]) == 0
    capsys.readouterr()
    # When the operator names another region after the command
    code = main(["cities", "--json", "--region", "eu-west-3"])
    # Then the call went there, and the one-line error says the table is not found
    assert code == 1
    error = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert "house-prices-registry" in error["message"] or "not found" in error["message"].lower()


def test_profile_gives_the_region_and_an_unknown_profile_is_one_line(
    aws: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a profile whose region is eu-west-3, no region in the environment, and a table only there
    config = tmp_path / "aws-config"
    config.write_text("[profile ops-test]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    create_table(boto3.client("dynamodb", region_name="eu-west-3"), "eu-registry")
    monkeypatch.setenv("AWS_PROFILE", "removed-after-the-test")  # main() sets it; monkeypatch restores it
    # When the operator names the profile after the command
    code = main(["cities", "--table", "eu-registry", "--profile", "ops-test", "--json"])
    # Then every call used its region
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out) == []
    # And a profile that does not exist is a one-line error, not a traceback
    code = main(["cities", "--profile", "no-such-profile"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ")
    assert "no-such-profile" in err
    assert "Traceback" not in err


# --- sync says what it does and fails on rejection (item 14) ----------------------------------------


def sync_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["sync", *argv, "--json"])
    out = capsys.readouterr().out
    # The result is the last, indented, document; a handler run in the test may print EMF lines before it.
    return code, json.loads(out[out.rfind("\n{\n") + 1 :] if "\n{\n" in out else out)


def test_sync_help_says_the_trigger_fires_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sync", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "without the S3 trigger" not in help_text
    assert "also fires the S3 trigger" in help_text


def test_sync_exits_1_and_shows_the_status_when_model_sync_rejects(
    aws: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an artifact that passes the upload checks but not model-sync's (another feature order)
    reordered = realistic_metrics(features=["SQUARE_FEET", "YEAR_BUILT", "NUM_BEDROOMS"])
    path = tmp_path / "reordered.tar.gz"
    path.write_bytes(build_artifact(reordered))
    # When it is synced
    code, result = sync_json(capsys, CITY, str(path), "--job", "reordered")
    # Then the command fails, and says why and what the registry holds
    assert code == 1
    assert (result["action"], result["status"]) == ("rejected", "rejected")
    assert result["reason"]


def trigger_wins_the_race(monkeypatch: pytest.MonkeyPatch, expected_action: str) -> None:
    """The CLI's upload is followed at once by model-sync's S3 trigger, which must decide ``expected_action``."""

    def upload_then_trigger(s3_client: Any, path: Path, bucket: str, key: str) -> None:
        s3_client.upload_file(str(path), bucket, key)
        assert only(invoke(s3_put_event(key)))["action"] == expected_action

    monkeypatch.setattr(cli, "upload_artifact", upload_then_trigger)


def test_sync_exits_1_when_the_trigger_rejected_it_first(
    aws: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the S3 trigger wins the race: model-sync runs on the upload before the CLI's own run
    trigger_wins_the_race(monkeypatch, "rejected")
    path = tmp_path / "reordered.tar.gz"
    path.write_bytes(build_artifact(realistic_metrics(features=["SQUARE_FEET", "YEAR_BUILT", "NUM_BEDROOMS"])))
    # When sync's own run finds the version already decided
    code, result = sync_json(capsys, CITY, str(path), "--job", "raced")
    # Then it reports a duplicate whose status is rejected, and still exits 1
    assert (result["action"], result["status"]) == ("duplicate", "rejected")
    assert code == 1


def test_sync_after_the_trigger_promoted_it_reports_live_and_exits_0(
    aws: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trigger_wins_the_race(monkeypatch, "promoted")
    code, result = sync_json(capsys, CITY, str(artifact_file(tmp_path, "good")), "--job", "raced")
    assert (code, result["action"], result["status"]) == (0, "duplicate", "live")


# --- tables in pipes and narrow terminals (item 15) ------------------------------------------------


def test_narrow_tables_keep_versions_whole_round_prices_and_say_none(
    aws: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a 40-column "terminal" (a pipe with COLUMNS=40) and no live model yet
    monkeypatch.setenv("COLUMNS", "40")
    assert main(["cities"]) == 0
    # Then an empty result says none instead of drawing an empty table
    assert capsys.readouterr().out.strip() == "Live models: none"
    # When a model is live
    code, synced = run(capsys, "sync", CITY, str(artifact_file(tmp_path, "a", ae_p50=20_123.456)), "--job", "a")
    assert code == 0
    assert main(["cities"]) == 0
    cities = capsys.readouterr().out
    assert main(["versions", CITY]) == 0
    versions = capsys.readouterr().out
    # Then the version and target model are printed whole, each on one line
    version = synced["version"]
    assert any(version in line for line in cities.splitlines())
    assert any(f"{CITY}.{version}.tar.gz" in line for line in cities.splitlines())
    assert any(version in line for line in versions.splitlines())
    assert "…" not in cities + versions
    # And the error in dollars is rounded in the table (JSON keeps every digit)
    assert "20,123" in versions
    assert "20123.456" not in versions
